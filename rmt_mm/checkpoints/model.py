"""Whole-model checkpoints (detector, segmentor) checked against the built model before loading.

mmengine loads ``load_from``, ``--resume`` and ``tools/test.py`` checkpoints with
``strict=False``: a checkpoint of another network or arch loads in part, with only a log warning,
and a partly random model is trained or evaluated. :func:`fit_checkpoint` refuses that with one
line saying what the file holds and what the config builds (read through the backbone families'
description machinery), unless the keys left out were named explicitly (``allow_partial``); then
it logs exactly which keys keep their initial values.
:class:`rmt_mm.checkpoints.hooks.StrictLoadHook` applies it to every checkpoint a runner loads;
:func:`load_model_checkpoint` is the same for scripts.
"""
from __future__ import annotations

import functools
import logging
import re
from typing import Dict, FrozenSet, List, Mapping, Optional, Sequence

import torch
from mmengine.logging import print_log
from torch import Tensor, nn

from ..errors import CheckpointError
from ..models import FAMILIES, DenseBackbone
from .backbone import KeyDiff, check_tensors, describe_checkpoint, describe_diff, diff_keys

#: Top-level children that hold no weights of their own.
_NOT_HEADS = ('backbone', 'data_preprocessor')


def _key_patterns(keys) -> FrozenSet[str]:
    """Keys with block and stage indices blanked: what a family's layout looks like."""
    return frozenset(re.sub(r'\.\d+(?=\.|$)', '.#', k) for k in keys)


@functools.lru_cache(maxsize=None)
def _family_patterns() -> Dict[type, FrozenSet[str]]:
    patterns = {}
    for cls in FAMILIES.values():
        with torch.device('meta'):
            model = cls(arch=next(iter(cls.arch_zoo)))
        patterns[cls] = _key_patterns(model.state_dict())
    return patterns


def describe_backbone_state(state_dict: Mapping[str, Tensor]) -> str:
    """One line naming the backbone a state dict (backbone keys) holds: the package's family
    whose key layout it shares most, described by that family, or its first keys."""
    if not state_dict:
        return 'no backbone'
    found = _key_patterns(state_dict)
    scores = {cls: len(found & own) / len(found | own) for cls, own in _family_patterns().items()}
    cls = max(scores, key=scores.get)
    if scores[cls] >= 0.5:
        return describe_checkpoint(cls, dict(state_dict)) or f'a {cls.__name__}-like backbone'
    return f'a backbone of another network (keys such as {", ".join(sorted(state_dict)[:2])})'


def _describe(backbone: str, heads: Sequence[str]) -> str:
    return f'{backbone} backbone + {", ".join(heads) if heads else "no heads"}'


def describe_state(state_dict: Mapping[str, Tensor]) -> str:
    """One line for a whole-model state dict: its backbone and its other top-level modules."""
    backbone = {k[len('backbone.'):]: v for k, v in state_dict.items()
                if k.startswith('backbone.')}
    heads = sorted({k.split('.', 1)[0] for k in state_dict} - set(_NOT_HEADS))
    return _describe(describe_backbone_state(backbone), heads)


def describe_model(model: nn.Module) -> str:
    """One line for a built model: its class, its backbone and its other top-level modules."""
    backbone = getattr(model, 'backbone', None)
    name = (backbone.describe() if isinstance(backbone, DenseBackbone)
            else type(backbone).__name__ if backbone is not None else 'no')
    heads = sorted(n for n, _ in model.named_children() if n not in _NOT_HEADS)
    return f'{type(model).__name__} with {_describe(name, heads)}'


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model whose keys a checkpoint holds: without DDP and test-time-augmentation
    wrappers (mmengine loads into their ``module``)."""
    from mmengine.model import BaseTTAModel, is_model_wrapper
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    return model


def state_dict_of(checkpoint: Mapping) -> Dict[str, Tensor]:
    """The model weights of a loaded checkpoint, keyed as mmengine loads them (its
    ``state_dict`` entry, else the checkpoint itself; DDP's ``module.`` prefix stripped)."""
    weights = checkpoint['state_dict'] if 'state_dict' in checkpoint else checkpoint
    if not isinstance(weights, Mapping):
        raise CheckpointError(f'its state_dict is a {type(weights).__name__}, not a dict')
    return {re.sub(r'^module\.', '', k): v for k, v in weights.items()}


def _under(key: str, prefixes: Sequence[str]) -> bool:
    """Whether ``key`` is one of ``prefixes`` or lies in a module they name."""
    return any(key == p or key.startswith(p.rstrip('.') + '.') for p in prefixes)


def _covering_modules(keys: Sequence[str], own: Mapping[str, Tensor]) -> List[str]:
    """The fewest module names that cover ``keys`` and no other key of ``own``: the widest
    ancestor of each key whose keys are all in ``keys``."""
    wanted = set(keys)
    modules = set()
    for key in keys:
        parts = key.split('.')[:-1]
        for depth in range(1, len(parts) + 1):
            module = '.'.join(parts[:depth])
            if all(k in wanted for k in own if _under(k, [module])):
                modules.add(module)
                break
        else:
            modules.add(key)
    return sorted(modules)


def fit_state_dict(model: nn.Module, state_dict: Mapping[str, Tensor],
                   allow_partial: Sequence[str] = (), allow_nonfinite: bool = False) -> KeyDiff:
    """Raise :class:`CheckpointError` unless ``state_dict`` fills every parameter and buffer of
    ``model`` with tensors of the same shape and kind of dtype (finite unless
    ``allow_nonfinite``) and has no foreign keys, keys under an ``allow_partial`` prefix excepted.

    Returns the excepted differences: missing keys keep their initial values, unexpected and
    mismatched ones must not be loaded.
    """
    if not state_dict:
        raise CheckpointError('the checkpoint holds no weights (an empty state dict)')
    own = model.state_dict()
    diff = diff_keys(own, state_dict)
    refused = KeyDiff(*([k for k in keys if not _under(k, allow_partial)] for keys in diff))
    allowed = KeyDiff(*([k for k in keys if _under(k, allow_partial)] for keys in diff))
    if refused.any():
        found, wanted = describe_state(state_dict), describe_model(model)
        summary = (f'checkpoint holds {found}; config builds {wanted}' if
                   not wanted.endswith(found) else f'checkpoint does not fit {wanted}')
        offending = refused.missing + refused.mismatched
        hint = ''
        if offending and not refused.unexpected and not any(
                k.startswith('backbone.') for k in offending):
            modules = _covering_modules(offending, own)
            hint = ('; to train these from their initial values, name them explicitly: '
                    f'allow_partial={modules} (tools/train.py --partial-load '
                    f'{" ".join(modules)})')
        raise CheckpointError(f'{summary}: {describe_diff(refused, own, state_dict)}{hint}')
    loadable = {k: v for k, v in state_dict.items()
                if k in own and k not in allowed.mismatched}
    check_tensors(loadable, own, allow_nonfinite)
    return allowed


def fit_checkpoint(model: nn.Module, checkpoint: dict, name: str,
                   allow_partial: Sequence[str] = (), allow_nonfinite: bool = False) -> List[str]:
    """Check a loaded ``checkpoint`` (named ``name`` in errors) against ``model`` (see
    :func:`fit_state_dict`) and remove from it the allowed keys that must not load; log and
    return the keys that keep their initial values."""
    try:
        state_dict = state_dict_of(checkpoint)
        allowed = fit_state_dict(unwrap_model(model), state_dict, allow_partial,
                                 allow_nonfinite)
    except CheckpointError as err:
        raise CheckpointError(f'{name}: {err}') from None
    weights = checkpoint['state_dict'] if 'state_dict' in checkpoint else checkpoint
    drop = set(allowed.unexpected) | set(allowed.mismatched)
    for key in [k for k in weights if re.sub(r'^module\.', '', k) in drop]:
        del weights[key]
    kept = sorted(allowed.missing + allowed.mismatched)
    if kept or allowed.unexpected:
        print_log(f'{name}: partial load as allowed by {list(allow_partial)}: '
                  f'{len(kept)} keys keep their initial values {kept}; '
                  f'{len(allowed.unexpected)} checkpoint keys ignored {allowed.unexpected}',
                  logger='current', level=logging.WARNING)
    return kept


def load_model_checkpoint(model: nn.Module, filename: str, allow_partial: Sequence[str] = (),
                          allow_nonfinite: bool = False,
                          map_location: Optional[str] = 'cpu') -> dict:
    """Load a detector/segmentor checkpoint (path or URL) into ``model`` all-or-nothing; the
    strict counterpart of ``mmengine.runner.load_checkpoint``. Returns the checkpoint."""
    from mmengine.runner.checkpoint import CheckpointLoader
    checkpoint = CheckpointLoader.load_checkpoint(filename, map_location=map_location)
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f'{filename}: holds a {type(checkpoint).__name__}, not a dict of '
                              'weights')
    fit_checkpoint(model, checkpoint, filename, allow_partial, allow_nonfinite)
    unwrap_model(model).load_state_dict(state_dict_of(checkpoint), strict=False)
    return checkpoint
