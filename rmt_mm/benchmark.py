"""The models the measuring tools run: one RMT per MaSA kernel with the same weights, and one
inference or training step of it; a config's whole detector or segmentor with the data sample
of one input.

``tools/benchmark.py`` and ``tools/device_check.py`` time these steps side by side
(:mod:`rmt_mm.timing`); ``tools/get_flops.py`` counts them; :mod:`rmt_mm.parity` holds the
tolerances the kernels are checked to. mmdet or mmseg is imported only for a whole model.
"""
import importlib
from typing import Optional, Tuple, Union

import torch
from torch import nn

from .models import RMT


def build(arch: Union[str, dict], impl: str, device: str = 'cpu',
          dtype: torch.dtype = torch.float32, with_cp: bool = False) -> RMT:
    """RMT with ``attn_impl=impl``; the same weights for every ``impl``."""
    torch.manual_seed(0)
    model = RMT(arch=arch, attn_impl=impl, drop_path_rate=0.0, with_cp=with_cp)
    return model.to(device=device, dtype=dtype)


def step(model: RMT, x: torch.Tensor, mode: str) -> None:
    """One inference (``'infer'``) or forward + backward (``'train'``), synchronised on CUDA."""
    if mode == 'infer':
        with torch.no_grad():
            model.eval()(x)
    else:
        model.train()
        x = x.detach().requires_grad_()
        sum(o.float().mean() for o in model(x)).backward()
        model.zero_grad(set_to_none=True)
    if x.is_cuda:
        torch.cuda.synchronize()


def build_whole_model(config: str, size: Tuple[int, int],
                      attn_impl: Optional[str] = None) -> Tuple[nn.Module, object]:
    """The detector or segmentor of ``config`` with random weights (no ImageNet weights are
    fetched), and a data sample (mmdet's or mmseg's) whose shapes are those of an input of
    ``size`` (H, W): what the model gets after preprocessing. ``attn_impl`` replaces the
    backbone's MaSA kernel."""
    from . import plugin  # noqa: F401  (registers the backbones)
    from .cli import load_config
    cfg, scope = load_config(config)
    cfg.model.pop('pretrained', None)
    cfg.model.backbone.init_cfg = None
    if attn_impl:
        cfg.model.backbone.attn_impl = attn_impl
    model = importlib.import_module(f'{scope}.registry').MODELS.build(cfg.model)
    structures = importlib.import_module(f'{scope}.structures')
    sample_cls = structures.DetDataSample if scope == 'mmdet' else structures.SegDataSample
    meta = dict(img_shape=tuple(size), ori_shape=tuple(size), pad_shape=tuple(size),
                batch_input_shape=tuple(size), scale_factor=(1.0, 1.0))
    return model, sample_cls(metainfo=meta)
