"""Reading upstream and converted checkpoints into a backbone, all-or-nothing.

One code path serves ``init_cfg=dict(type='Pretrained', ...)`` and the converter
(:mod:`rmt_mm.checkpoints.convert`): :func:`read_checkpoint` unwraps any supported layout,
:func:`to_backbone_state_dict` drops what dense prediction does not use, and
:func:`check_state_dict` refuses anything that would load only partly. A backbone is read only
through the contract of :class:`rmt_mm.models.base.DenseBackbone`; this module imports no model.
Pure PyTorch, as the models that use it.
"""
from __future__ import annotations

import os.path as osp
from typing import TYPE_CHECKING, Dict, List, Mapping, NamedTuple, Optional, Tuple, Type

import torch
from torch import Tensor

from ..errors import CheckpointError
from ..log import log
from .reading import fetch_checkpoint, safe_load

if TYPE_CHECKING:  # the models import this module, not the other way round
    from ..models.base import DenseBackbone

StateDict = Dict[str, Tensor]

# Layouts, in detection order: (name, key holding the weights, key holding the EMA weights).
LAYOUTS = (
    ('deit', 'model', 'model_ema'),  # the authors' classification trainer
    ('token_label', 'state_dict', 'state_dict_ema'),  # the authors' token-labeling trainer
    # mmengine / mmdet / mmseg (also mmdet 2.x, mmseg 0.x) and other trainers' ``state_dict``
    ('state_dict', 'state_dict', None),
)


def read_checkpoint(filename: str, use_ema: bool = False) -> Tuple[StateDict, str]:
    """Load ``filename`` (a path, an http(s) URL or, through mmengine, another scheme) safely
    and return its (possibly EMA) state dict and layout name."""
    if filename.startswith(('http://', 'https://')):
        ckpt = safe_load(fetch_checkpoint(filename), name=filename)
    elif '://' in filename:
        from mmengine.runner import CheckpointLoader
        ckpt = CheckpointLoader.load_checkpoint(filename, map_location='cpu')
    else:
        ckpt = safe_load(filename)
    return unwrap_checkpoint(ckpt, filename, use_ema)


def unwrap_checkpoint(ckpt: object, filename: str, use_ema: bool = False) -> Tuple[StateDict, str]:
    if not isinstance(ckpt, dict):
        raise CheckpointError(f'{filename}: unknown checkpoint layout (a {type(ckpt).__name__}, '
                              'expected a dict)')
    for name, key, ema_key in LAYOUTS:
        if key not in ckpt or (name == 'token_label' and 'state_dict_ema' not in ckpt
                               and 'arch' not in ckpt):
            continue
        if use_ema:
            if ema_key is None or ema_key not in ckpt:
                raise CheckpointError(f'{filename}: --ema asked for, but this {name} checkpoint '
                                      f'has no EMA weights (keys: {sorted(ckpt)})')
            key = ema_key
        return _as_state_dict(ckpt[key], f'{filename}[{key!r}]'), name
    if ckpt and all(isinstance(v, Tensor) for v in ckpt.values()):
        if use_ema:
            raise CheckpointError(f'{filename}: --ema asked for, but this is a bare state dict')
        return dict(ckpt), 'state_dict'
    raise CheckpointError(f'{filename}: unknown checkpoint layout; top-level keys '
                          f'{sorted(map(str, ckpt))[:10]}, expected one of model/model_ema '
                          '(DeiT), state_dict/state_dict_ema (token labeling), state_dict '
                          '(mmengine) or a bare state dict')


def _as_state_dict(obj: object, where: str) -> StateDict:
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f'{where} is not a state dict of tensors')
    return {k[len('module.'):] if k.startswith('module.') else k: v for k, v in obj.items()}


def to_backbone_state_dict(state_dict: StateDict, model_cls: Type[DenseBackbone],
                           prefix: Optional[str] = None) -> Tuple[StateDict, List[str]]:
    """Keep the backbone's keys: strip ``prefix`` (``'backbone.'`` is found automatically in
    detector/segmentor checkpoints) and drop the classification-only top-level modules.

    Returns the backbone state dict and the dropped keys.
    """
    if prefix is None and any(k.startswith('backbone.') for k in state_dict):
        prefix = 'backbone.'
    dropped = []
    if prefix:
        kept = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        dropped = [k for k in state_dict if not k.startswith(prefix)]
        if not kept:
            raise CheckpointError(f'no key starts with prefix {prefix!r}')
        state_dict = kept
    head = set(model_cls.classification_only_modules)
    dropped += [k for k in state_dict if k.split('.', 1)[0] in head]
    return {k: v for k, v in state_dict.items() if k.split('.', 1)[0] not in head}, dropped


class KeyDiff(NamedTuple):
    """How a checkpoint's keys differ from a model's."""
    missing: List[str]
    unexpected: List[str]
    mismatched: List[str]  # same key, other shape

    def any(self) -> bool:
        return bool(self.missing or self.unexpected or self.mismatched)


def diff_keys(own: Mapping[str, Tensor], theirs: Mapping[str, Tensor],
              optional: Tuple[str, ...] = ()) -> KeyDiff:
    """Compare ``theirs`` (a checkpoint) with ``own`` (a model's state dict); keys of ``own``
    starting with an ``optional`` prefix may be missing."""
    return KeyDiff(
        missing=sorted(k for k in own if k not in theirs and not k.startswith(optional)),
        unexpected=sorted(k for k in theirs if k not in own),
        mismatched=sorted(k for k in own.keys() & theirs.keys()
                          if tuple(own[k].shape) != tuple(theirs[k].shape)))


def describe_diff(diff: KeyDiff, own: Mapping[str, Tensor], theirs: Mapping[str, Tensor]) -> str:
    """``'2 missing (e.g. ...), 1 shape mismatch (e.g. k: (81, 1024) in the checkpoint, ...)'``."""
    parts = [f'{len(keys)} {label} (e.g. {keys[0]})'
             for label, keys in (('missing', diff.missing), ('unexpected', diff.unexpected))
             if keys]
    if diff.mismatched:
        key = diff.mismatched[0]
        parts.append(f'{len(diff.mismatched)} shape mismatch (e.g. {key}: '
                     f'{tuple(theirs[key].shape)} in the checkpoint, {tuple(own[key].shape)} in '
                     'the model)')
    return ', '.join(parts)


def _dtype_kind(tensor: Tensor) -> str:
    dtype = tensor.dtype
    return ('bool' if dtype == torch.bool else 'complex' if dtype.is_complex else
            'floating' if dtype.is_floating_point else 'integer')


def check_tensors(state_dict: Mapping[str, Tensor], own: Mapping[str, Tensor],
                  allow_nonfinite: bool = False) -> None:
    """Refuse tensors that cannot be loaded as they are: without data (saved from a meta-device
    model), of another kind of dtype than the model's (e.g. integer for floating point), or
    holding NaN/Inf (unless ``allow_nonfinite``: a diverged run's weights are rarely wanted)."""
    not_tensors = sorted(k for k, v in state_dict.items() if not isinstance(v, Tensor))
    if not_tensors:
        raise CheckpointError(f'{len(not_tensors)} entries are not tensors (e.g. '
                              f'{not_tensors[0]}: {type(state_dict[not_tensors[0]]).__name__})')
    no_data = sorted(k for k, v in state_dict.items() if v.is_meta)
    if no_data:
        raise CheckpointError(f'{len(no_data)} tensors have no data (e.g. {no_data[0]}; saved '
                              'from a model on the meta device)')
    kinds = sorted(k for k in state_dict.keys() & own.keys()
                   if _dtype_kind(state_dict[k]) != _dtype_kind(own[k]))
    if kinds:
        key = kinds[0]
        raise CheckpointError(f'{len(kinds)} tensors have the wrong kind of dtype (e.g. {key}: '
                              f'{state_dict[key].dtype} in the checkpoint, {own[key].dtype} in '
                              'the model)')
    if not allow_nonfinite:
        bad = sorted(k for k, v in state_dict.items()
                     if (v.is_floating_point() or v.is_complex()) and not torch.isfinite(v).all())
        if bad:
            raise CheckpointError(f'{len(bad)} tensors hold NaN or Inf (e.g. {bad[0]}); such '
                                  'weights are refused unless allow_nonfinite is set')


def backbone_key_diff(model: DenseBackbone, state_dict: StateDict) -> KeyDiff:
    """How ``state_dict``'s keys and shapes differ from ``model``'s; its dense-only keys may be
    missing."""
    return diff_keys(model.state_dict(), state_dict, tuple(type(model).dense_only_prefixes))


def check_state_dict(model: DenseBackbone, state_dict: StateDict,
                     allow_nonfinite: bool = False) -> List[str]:
    """Raise :class:`CheckpointError` unless ``state_dict`` fills every parameter and buffer of
    ``model`` (except ``dense_only_prefixes``) with tensors of matching shape and kind of dtype,
    all holding data (and finite values unless ``allow_nonfinite``), and has no foreign keys.

    Returns the dense-only keys the checkpoint lacks (they keep their initial values).
    """
    own = model.state_dict()
    name = type(model).__name__
    if not own.keys() & state_dict.keys():
        raise CheckpointError(f'no key of the checkpoint matches the {name} backbone (it starts '
                              f'with {sorted(state_dict)[:3]}); is it a {name} checkpoint?')
    diff = backbone_key_diff(model, state_dict)
    if diff.any():
        found, wanted = describe_checkpoint(type(model), state_dict), model.describe()
        summary = (f'checkpoint is {found}, config asks for {wanted}'
                   if found and found != wanted else f'{name} checkpoint does not fit')
        raise CheckpointError(f'{summary}: {describe_diff(diff, own, state_dict)}')
    check_tensors(state_dict, own, allow_nonfinite)
    _check_hyperparam_buffers(model, state_dict)
    return [k for k in own if k not in state_dict]


def _check_hyperparam_buffers(model: DenseBackbone, state_dict: StateDict) -> None:
    """Buffers derived from hyper-parameters (e.g. RMT's decay rates) must agree: loading them
    would otherwise silently change the model's arch."""
    for key in model.hyperparam_buffers():
        own = model.state_dict()[key]
        if own.device.type != 'meta' and not torch.allclose(
                own.float(), state_dict[key].float().to(own.device), rtol=1e-5, atol=1e-6):
            raise CheckpointError(f'{key} differs from the config ({state_dict[key].tolist()} vs '
                                  f'{own.tolist()}): the checkpoint was trained with other '
                                  f'hyper-parameters than {model.describe()}')


def describe_checkpoint(model_cls: Type[DenseBackbone], state_dict: StateDict) -> Optional[str]:
    """The family's one-line summary of ``state_dict``, or ``None`` if its keys do not fit."""
    try:
        return model_cls.describe_state_dict(state_dict)
    except (NotImplementedError, KeyError, IndexError, ValueError):
        return None


def load_backbone_checkpoint(model: DenseBackbone, filename: str, prefix: Optional[str] = None,
                             use_ema: bool = False, allow_nonfinite: bool = False) -> None:
    """Load an upstream or converted checkpoint into ``model``, all-or-nothing: everything is
    validated before the first parameter is touched."""
    state_dict, layout = read_checkpoint(filename, use_ema)
    try:
        state_dict, dropped = to_backbone_state_dict(state_dict, type(model), prefix)
        fresh = check_state_dict(model, state_dict, allow_nonfinite)
    except CheckpointError as err:
        raise CheckpointError(f'{filename}: {err}') from None
    model.load_state_dict(state_dict, strict=False)
    log(f'{type(model).__name__}: loaded {len(state_dict)} tensors from '
              f'{osp.basename(filename)} ({layout} layout); dropped {len(dropped)} non-backbone '
              f'keys{" " + str(_summarise(dropped)) if dropped else ""}; kept initial values for '
              f'{_summarise(fresh) if fresh else "nothing"}')


def _summarise(keys: List[str]) -> List[str]:
    """Group dropped keys by top-level module for a short log line."""
    return sorted({k.split('.', 1)[0] + '.*' for k in keys})
