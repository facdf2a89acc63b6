"""The CPU speed measures of RMT, outside its attention kernels, in one place.

Each computes exactly what the plain code does (up to float32 rounding) and pays on CPU in
``tools/benchmark.py``'s measurements (docs/benchmarks.md):

- ``slab_weight_grad``: the LePE's 5x5 depthwise conv computes its weight gradient in slabs
  of at most three kernel columns (:mod:`.depthwise`), where oneDNN is fast. CPU only: the op
  keeps the plain path on other devices.
- ``inplace_residuals``: residual sums and layer scales accumulate into each branch's fresh
  output instead of allocating a new map; on CPU every fresh map-sized tensor page-faults new
  memory. No producer of those outputs saves them for
  backward, and autograd's version counters would catch it if one did.
- ``ffn_row_chunks``: without autograd, the FFN runs in chunks of image rows so that its 3-4x
  wide hidden map never exists whole (:func:`ffn_in_row_chunks`).

:class:`rmt_mm.models.RMT` takes them as one switch, ``cpu_speedups``; by default they are on
with every kernel but ``reference``, which stays the upstream computation op by op. They are
off while the model is traced for export (:func:`.masa.exporting`): with them, the
TorchScript exporter produced a graph whose outputs were off by 0.2.
"""
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

from .budgets import FFN_CHUNK_ELEMS


@dataclass(frozen=True)
class CpuSpeedups:
    """Which measures are on (see the module docstring)."""

    slab_weight_grad: bool = False
    inplace_residuals: bool = False
    ffn_row_chunks: bool = False

    @classmethod
    def resolve(cls, enabled: Optional[bool], attn_impl: str) -> 'CpuSpeedups':
        """All on or all off: as asked, or (``None``) on unless ``attn_impl='reference'``."""
        on = attn_impl != 'reference' if enabled is None else enabled
        return cls(slab_weight_grad=on, inplace_residuals=on, ffn_row_chunks=on)


def residual_add(x: Tensor, branch: Tensor, inplace: bool) -> Tensor:
    """``x + branch``; in place into ``branch``, a fresh output nothing saved for backward."""
    return branch.add_(x) if inplace else x + branch


def layer_scale(branch: Tensor, gamma: Optional[Tensor], inplace: bool) -> Tensor:
    """``gamma * branch`` (``branch`` itself without a ``gamma``); in place like
    :func:`residual_add`."""
    if gamma is None:
        return branch
    return branch.mul_(gamma) if inplace else gamma * branch


def ffn_in_row_chunks(fc1: nn.Linear, dwconv: nn.Module, fc2: nn.Linear, x: Tensor) -> Tensor:
    """``fc2(h + dwconv(h))`` with ``h = gelu(fc1(x))`` on a ``(B, H, W, C)`` map, computed in
    chunks of image rows (GELU and the add in place). Each chunk carries a one-row halo on
    either side for the 3x3 conv; at the image border the conv's own zero padding is the right
    halo. Only without autograd: the in-place GELU would break backward."""
    b, h, w, _ = x.shape
    rows = max(1, FFN_CHUNK_ELEMS // (b * w * fc1.out_features))
    out = x.new_empty(b, h, w, fc2.out_features)
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        lo, hi = max(r0 - 1, 0), min(r1 + 1, h)
        hidden = fc1(x[:, lo:hi])
        torch.ops.aten.gelu_(hidden)
        mixed = dwconv(hidden)[:, r0 - lo:r1 - lo].add_(hidden[:, r0 - lo:r1 - lo])
        out[:, r0:r1] = fc2(mixed)
    return out
