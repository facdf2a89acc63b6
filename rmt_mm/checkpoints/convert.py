"""Converting upstream checkpoints into backbone-only files for mmdet/mmseg.

The converter must know every backbone family (it infers which one a file holds), so it reads
the family table of :mod:`rmt_mm.models`; the loader it builds on, :mod:`.backbone`,
knows none.
"""
from __future__ import annotations

import json
import os.path as osp
from typing import Optional, Tuple, Type

import torch

from ..errors import CheckpointError
from ..models import DEFAULT_FAMILY, FAMILIES
from ..models.base import DenseBackbone
from .atomic import atomic_save
from .backbone import (
    StateDict,
    backbone_key_diff,
    check_state_dict,
    describe_checkpoint,
    read_checkpoint,
    to_backbone_state_dict,
)


def infer_arch(model_cls: Type[DenseBackbone], state_dict: StateDict) -> str:
    """The released arch of ``model_cls`` whose keys and shapes match ``state_dict``."""
    matches = []
    for arch in model_cls.arch_zoo:
        with torch.device('meta'):
            candidate = model_cls(arch=arch)
        if not backbone_key_diff(candidate, state_dict).any():  # keys and shapes decide
            matches.append(arch)
    if len(matches) != 1:
        found = describe_checkpoint(model_cls, state_dict) or 'not a known layout'
        raise CheckpointError(f'cannot infer the {model_cls.__name__} arch: the checkpoint '
                              f'({found}) matches {matches or "no released arch"}; pass --arch')
    return matches[0]


def parse_arch(arch: Optional[str]) -> Tuple[Optional[Type[DenseBackbone]], Optional[object]]:
    """``'s'``, ``'rmt_small'``, ``'restv2_tiny'`` or a JSON dict of hyper-parameters (with an
    optional ``"backbone": "ResTV2"``) -> (backbone class, arch)."""
    if arch is None:
        return None, None
    if arch.lstrip().startswith('{'):
        cfg = json.loads(arch)
        family = str(cfg.pop('backbone', DEFAULT_FAMILY)).lower()
        if family not in FAMILIES:
            raise ValueError(f'unknown backbone {family!r} in --arch; expected {sorted(FAMILIES)}')
        return FAMILIES[family], cfg
    family, _, name = arch.lower().replace('-', '_').partition('_')
    if name and family in FAMILIES:
        return FAMILIES[family], name
    return FAMILIES[DEFAULT_FAMILY], arch


def convert_checkpoint(src: str, dst: str, arch: Optional[str] = None, use_ema: bool = False,
                       allow_nonfinite: bool = False) -> dict:
    """Write ``src`` (any supported layout) as an mmengine checkpoint holding only backbone
    weights, after checking every key, shape, dtype and value against ``arch`` (inferred when
    ``None``). Nothing is written unless all of it passes, and ``dst`` appears atomically."""
    state_dict, layout = read_checkpoint(src, use_ema)
    try:
        meta, backbone = _validated_backbone(state_dict, arch, allow_nonfinite)
    except CheckpointError as err:
        raise CheckpointError(f'{src}: {err}') from None
    meta.update(source=osp.basename(src), layout=layout, ema=use_ema)
    atomic_save(dict(state_dict=backbone, meta=meta), dst)
    return meta


def _validated_backbone(state_dict: StateDict, arch: Optional[str],
                        allow_nonfinite: bool) -> Tuple[dict, StateDict]:
    model_cls, arch_cfg = parse_arch(arch)
    if model_cls is None:
        found, reasons = {}, []
        for cls in FAMILIES.values():
            try:
                found[cls] = infer_arch(cls, to_backbone_state_dict(state_dict, cls)[0])
            except CheckpointError as err:
                reasons.append(str(err).replace('; pass --arch', ''))
        if len(found) != 1:
            raise CheckpointError(f'ambiguous arch {found}' if found else
                                  '; '.join(reasons) + '; pass --arch')
        (model_cls, arch_cfg), = found.items()
    backbone, dropped = to_backbone_state_dict(state_dict, model_cls)
    model = model_cls(arch=arch_cfg)
    fresh = check_state_dict(model, backbone, allow_nonfinite)
    meta = dict(backbone=model_cls.__name__, arch=arch_cfg, description=model.describe(),
                dropped_keys=dropped, not_in_checkpoint=fresh)
    return meta, backbone
