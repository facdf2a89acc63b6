"""The models the benchmarks run: one RMT per MaSA kernel with the same weights, and one
inference or training step of it.

``tools/benchmark.py`` and ``tools/device_check.py`` time these steps side by side
(:mod:`rmt_mm.timing`); :mod:`rmt_mm.parity` holds the tolerances the kernels are checked to.
"""
from typing import Union

import torch

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
