"""Reading upstream and converted checkpoints into a backbone, all-or-nothing.

One code path serves ``init_cfg=dict(type='Pretrained', ...)`` and the converter
(:mod:`rmt_mm.convert`): :func:`read_checkpoint` unwraps any supported layout,
:func:`to_backbone_state_dict` drops what dense prediction does not use, and
:func:`check_state_dict` refuses anything that would load only partly. A backbone is read only
through the contract of :class:`rmt_mm.models.base.DenseBackbone`; this module imports no model.
"""
from __future__ import annotations

import os.path as osp
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple, Type

import torch
from mmengine.logging import print_log
from torch import Tensor

from .serialization import CheckpointError, safe_load

if TYPE_CHECKING:  # the models import this module, not the other way round
    from .models.base import DenseBackbone

StateDict = Dict[str, Tensor]

# Layouts, in detection order: (name, key holding the weights, key holding the EMA weights).
LAYOUTS = (
    ('deit', 'model', 'model_ema'),  # the authors' classification trainer
    ('token_label', 'state_dict', 'state_dict_ema'),  # the authors' token-labeling trainer
    # mmengine / mmdet / mmseg (also mmdet 2.x, mmseg 0.x) and other trainers' ``state_dict``
    ('state_dict', 'state_dict', None),
)


def read_checkpoint(filename: str, use_ema: bool = False) -> Tuple[StateDict, str]:
    """Load ``filename`` safely and return its (possibly EMA) state dict and layout name."""
    if '://' in filename:
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


def check_state_dict(model: DenseBackbone, state_dict: StateDict) -> List[str]:
    """Raise :class:`CheckpointError` unless ``state_dict`` fills every parameter and buffer of
    ``model`` (except ``dense_only_prefixes``) with matching shapes and has no foreign keys.

    Returns the dense-only keys the checkpoint lacks (they keep their initial values).
    """
    own = model.state_dict()
    optional = tuple(type(model).dense_only_prefixes)
    name = type(model).__name__
    if not own.keys() & state_dict.keys():
        raise CheckpointError(f'no key of the checkpoint matches the {name} backbone (it starts '
                              f'with {sorted(state_dict)[:3]}); is it a {name} checkpoint?')
    missing = [k for k in own if k not in state_dict and not k.startswith(optional)]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [k for k in own.keys() & state_dict.keys()
                  if own[k].shape != state_dict[k].shape]
    if missing or unexpected or mismatched:
        found, wanted = describe_checkpoint(type(model), state_dict), model.describe()
        summary = (f'checkpoint is {found}, config asks for {wanted}'
                   if found and found != wanted else f'{name} checkpoint does not fit')
        details = []
        for label, keys in (('missing', missing), ('unexpected', unexpected),
                            ('shape mismatch', mismatched)):
            if keys:
                details.append(f'{len(keys)} {label} (e.g. {sorted(keys)[0]})')
        raise CheckpointError(f'{summary}: {", ".join(details)}')
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
                             use_ema: bool = False) -> None:
    """Load an upstream or converted checkpoint into ``model``, all-or-nothing."""
    state_dict, layout = read_checkpoint(filename, use_ema)
    state_dict, dropped = to_backbone_state_dict(state_dict, type(model), prefix)
    fresh = check_state_dict(model, state_dict)
    model.load_state_dict(state_dict, strict=False)
    print_log(f'{type(model).__name__}: loaded {len(state_dict)} tensors from '
              f'{osp.basename(filename)} ({layout} layout); dropped {len(dropped)} non-backbone '
              f'keys{" " + str(_summarise(dropped)) if dropped else ""}; kept initial values for '
              f'{_summarise(fresh) if fresh else "nothing"}', logger='current')


def _summarise(keys: List[str]) -> List[str]:
    """Group dropped keys by top-level module for a short log line."""
    return sorted({k.split('.', 1)[0] + '.*' for k in keys})
