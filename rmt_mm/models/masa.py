"""MaSA (Manhattan Self-Attention): its position prior and the one door to its kernels.

MaSA is softmax attention with a per-head bias ``decay_h * ManhattanDistance(i, j)`` on the
logits and a 1-D rotary shift of queries and keys over the raster index. :class:`RelPos2d` holds
the per-stage tables; :func:`masa` rotates, scales and attends with the kernel ``attn_impl``
names. All kernels compute the same function:

- ``reference``: the upstream algorithm, step by step (explicit logits, bias add, softmax). The
  parity fixtures pin it down; it materialises ``(B, heads, L, L)`` logits and probabilities and,
  in full-attention stages, a ``(heads, L, L)`` decay bias.
- ``blocked`` (:mod:`.masa_blocked`): the same maths in L2-sized blocks, as autograd Functions
  with a FlashAttention-style backward.
- ``sdpa``: :func:`torch.nn.functional.scaled_dot_product_attention` with the decay as an additive
  mask. Full attention is processed in blocks of query rows whose bias rows are generated on the
  fly, and under autograd each block is recomputed in backward instead of stored.
- ``flex`` (:mod:`.masa_flex`): compiled FlexAttention with the decay computed from the token
  indices in ``score_mod``; one compiled kernel per signature serves every input size.

Under export (:func:`exporting`) every kernel runs the export form (:mod:`.masa_export`).

The fast kernels (all but ``reference``) share their inputs: the rotation as one complex product
with the attention scale folded into ``q``'s, and cached tables (:class:`PositionTables`).
Neither keeps anything of size ``L x L``: memory grows linearly with the number of tokens. A new
kernel is two functions of the :data:`FastKernel` signature and one row of
:data:`FAST_KERNELS`. Tensors use the map-shaped, head-split layout ``(B, H, W, heads,
head_dims)``.
"""
from collections import OrderedDict
from functools import partial
from typing import Callable, Dict, NamedTuple, Tuple

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from torch import Tensor, nn

from ..compat import is_exporting
from .budgets import FULL_BIAS_BLOCK_ELEMS
from .masa_blocked import masa_decomposed_blocked, masa_full_blocked, requires_grad
from .masa_export import (
    export_rotation,
    masa_decomposed_export,
    masa_full_export,
    softmax_attention,
)
from .masa_flex import masa_decomposed_flex, masa_full_flex


def full_bias_fits(num_heads: int, length: int) -> bool:
    """Whether a whole ``(heads, L, L)`` bias is small enough to build in one piece."""
    return num_heads * length * length <= FULL_BIAS_BLOCK_ELEMS


class PositionTables(NamedTuple):
    """What the fast kernels read about positions on an ``h x w`` map."""

    phase: Tensor  # (h, w, 1, head_dims // 2) complex rotary phases exp(i t theta)
    bias_h: Tensor  # (heads, h, h) decay_h * |y - y'|
    bias_w: Tensor  # (heads, w, w) decay_h * |x - x'|
    decay: Tensor  # (heads, )


class RelPos2d(nn.Module):
    """Rotary tables and the Manhattan-distance decay bias for one stage.

    ``angle`` and ``decay`` are persistent buffers because upstream checkpoints carry them; they
    double as a hyper-parameter check when loading. The reference kernel rebuilds its tables
    every forward, as upstream; the fast kernels read :meth:`fast_tables`, a small per-size
    cache keyed on the buffers' version counters so that loading new values invalidates it.
    The export form computes its tables in the graph and plans its blocks by the stage's
    ``stride`` (:mod:`.masa_export`).
    """

    cache_size = 16

    def __init__(self, embed_dims: int, num_heads: int, init_value: float,
                 heads_range: float, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        head_dims = embed_dims // num_heads
        freqs = 1.0 / (10000**torch.linspace(0, 1, head_dims // 2))
        self.register_buffer('angle', freqs.repeat_interleave(2))
        heads = torch.arange(num_heads, dtype=torch.float)
        self.register_buffer('decay',
                             torch.log(1 - 2**(-init_value - heads_range * heads / num_heads)))
        self._cache: 'OrderedDict[tuple, PositionTables]' = OrderedDict()

    def _phase_angles(self, h: int, w: int) -> Tensor:
        # 1-D raster index t = row * w + col, as upstream (not a 2-D rotary).
        t = torch.arange(h * w, device=self.angle.device, dtype=self.angle.dtype)
        return t[:, None] * self.angle[None, :]

    def rotary(self, h: int, w: int) -> Tuple[Tensor, Tensor]:
        """(h, w, 1, d) sin and cos tables, broadcasting over heads."""
        phase = self._phase_angles(h, w).reshape(h, w, 1, -1)
        return phase.sin(), phase.cos()

    def _distance(self, n: int) -> Tensor:
        idx = torch.arange(n, device=self.decay.device, dtype=self.decay.dtype)
        return (idx[:, None] - idx[None, :]).abs()

    def axis_bias(self, n: int) -> Tensor:
        """(heads, n, n) bias ``decay_h * |i - i'|`` along one axis."""
        return self._distance(n) * self.decay[:, None, None]

    def grid_bias(self, h: int, w: int) -> Tensor:
        """(heads, L, L) bias ``decay_h * (|dy| + |dx|)`` over the raster-ordered map."""
        dist = self._distance(h)[:, None, :, None] + self._distance(w)[None, :, None, :]
        return dist.reshape(h * w, h * w) * self.decay[:, None, None]

    def fast_tables(self, h: int, w: int) -> PositionTables:
        """The cached tables of the fast kernels (they build full-attention bias rows from the
        per-axis biases as they go)."""
        key = (h, w, self.decay.device, self.decay._version, self.angle._version)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        angles = self._phase_angles(h, w)[:, ::2].reshape(h, w, 1, -1)
        phase = torch.polar(torch.ones_like(angles), angles)
        tables = PositionTables(phase, self.axis_bias(h), self.axis_bias(w), self.decay)
        self._cache[key] = tables
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return tables


def rotate_every_two(x: Tensor) -> Tensor:
    """Map each pair ``(x0, x1)`` of the last dim to ``(-x1, x0)`` (interleaved rotary)."""
    return torch.stack((-x[..., 1::2], x[..., ::2]), dim=-1).flatten(-2)


def rotary_reference(x: Tensor, sin: Tensor, cos: Tensor) -> Tensor:
    """``x * cos + rotate_every_two(x) * sin``, as upstream; sin/cos broadcast over heads."""
    return x * cos + rotate_every_two(x) * sin


def rotary_complex(x: Tensor, phase: Tensor, inplace: bool = False) -> Tensor:
    """The same rotation as one complex product: pairs ``(x0, x1)`` are ``x0 + i x1`` and the
    interleaved angle table makes the rotation ``(x0 + i x1) * exp(i t theta)``. ``inplace``
    (float32 only; not under autograd) rotates ``x`` itself, saving a map-sized allocation."""
    if inplace and x.dtype == torch.float32:
        torch.view_as_complex(x.unflatten(-1, (-1, 2))).mul_(phase)
        return x
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * phase).flatten(-2).to(x.dtype)


# ----------------------------------------------------------------------------- reference


def masa_full(q: Tensor, k: Tensor, v: Tensor, bias: Tensor) -> Tensor:
    """Reference softmax attention over all ``L = H * W`` tokens of ``(B, heads, L, d)``
    sequences with a ``(heads, L, L)`` bias. ``k`` is pre-scaled."""
    return softmax_attention(q, k, v, bias)


def masa_decomposed(q: Tensor, k: Tensor, v: Tensor, bias_h: Tensor, bias_w: Tensor) -> Tensor:
    """Reference axial attention: within each row (W axis) first, then within each column
    (H axis), reusing the same q and k; ``bias_h``/``bias_w`` are ``(heads, H, H)``/
    ``(heads, W, W)``. ``k`` is pre-scaled."""
    b, h, w, n, d = q.shape

    def rows(t: Tensor) -> Tensor:  # (B * H, heads, W, d)
        return t.transpose(2, 3).reshape(b * h, n, w, d)

    def columns(t: Tensor) -> Tensor:  # (B * W, heads, H, d)
        return t.permute(0, 2, 3, 1, 4).reshape(b * w, n, h, d)

    v = softmax_attention(rows(q), rows(k), rows(v), bias_w).reshape(b, h, n, w, d).transpose(2, 3)
    out = softmax_attention(columns(q), columns(k), columns(v), bias_h)
    return out.reshape(b, w, n, h, d).permute(0, 3, 1, 2, 4)


# ----------------------------------------------------------------------------- sdpa


def _sdpa_axis(q: Tensor, k: Tensor, v: Tensor, bias: Tensor) -> Tensor:
    """SDPA over the second-to-last axis of ``(..., heads, N, d)`` batches."""
    lead = q.shape[:-3]
    q, k, v = (t.reshape(-1, *t.shape[-3:]) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)
    return out.view(*lead, *out.shape[-3:])


def masa_decomposed_sdpa(q: Tensor, k: Tensor, v: Tensor, bias_h: Tensor,
                         bias_w: Tensor) -> Tensor:
    """Axial attention (W then H) through SDPA; ``q`` is pre-scaled."""
    out_w = _sdpa_axis(q.transpose(2, 3), k.transpose(2, 3), v.transpose(2, 3), bias_w)
    out = _sdpa_axis(q.permute(0, 2, 3, 1, 4), k.permute(0, 2, 3, 1, 4),
                     out_w.permute(0, 3, 2, 1, 4), bias_h)  # (B, W, heads, H, d)
    return out.permute(0, 3, 1, 2, 4)


def grid_coords(h: int, w: int, device: torch.device) -> Tuple[Tensor, Tensor]:
    """Row and column of each raster-ordered token, as floats."""
    rows = torch.arange(h, device=device, dtype=torch.float32).repeat_interleave(w)
    cols = torch.arange(w, device=device, dtype=torch.float32).repeat(h)
    return rows, cols


def _full_block(q: Tensor, k: Tensor, v: Tensor, decay: Tensor, rows: Tensor, cols: Tensor,
                start: int) -> Tensor:
    """Attention of the query rows ``start:start + q.shape[2]`` with their bias made here."""
    stop = start + q.shape[2]
    dist = (rows[start:stop, None] - rows).abs_() + (cols[start:stop, None] - cols).abs_()
    bias = (dist * decay[:, None, None]).to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)


def masa_full_sdpa(q: Tensor, k: Tensor, v: Tensor, decay: Tensor, h: int, w: int) -> Tensor:
    """Full attention through SDPA on the ``(B, heads, h * w, d)`` sequences of ``h x w``
    maps; ``q`` is pre-scaled.

    The bias is made on the fly: whole for small maps, else block by block over query rows so
    it never exists whole, each block checkpointed under autograd.
    """
    n, length = q.shape[1:3]
    rows, cols = grid_coords(h, w, q.device)
    if full_bias_fits(n, length):
        out = _full_block(q, k, v, decay, rows, cols, 0)
    else:
        step = max(1, FULL_BIAS_BLOCK_ELEMS // (n * length))
        grad = requires_grad(q, k, v)
        blocks = []
        for start in range(0, length, step):
            args = (q[:, :, start:start + step], k, v, decay, rows, cols, start)
            blocks.append(cp.checkpoint(_full_block, *args, use_reentrant=False)
                          if grad else _full_block(*args))
        out = torch.cat(blocks, dim=2)
    return out


# ----------------------------------------------------------------------------- the door


class FastKernel(NamedTuple):
    """A fast kernel: ``fn(q, k, v, tables, overwrite_v) -> out`` for full attention, on
    ``(B, heads, L, d)`` token sequences, and for the decomposed (W-then-H axial) form, on
    ``(B, H, W, heads, d)`` maps. ``q`` and ``k`` come rotated, ``q`` scaled; with
    ``overwrite_v`` (inference only) the kernel may write its output over ``v``'s memory."""

    full: Callable[[Tensor, Tensor, Tensor, PositionTables, bool], Tensor]
    decomposed: Callable[[Tensor, Tensor, Tensor, PositionTables, bool], Tensor]


FAST_KERNELS: Dict[str, FastKernel] = {
    'sdpa': FastKernel(
        full=lambda q, k, v, t, overwrite_v: masa_full_sdpa(
            q, k, v, t.decay, t.bias_h.shape[-1], t.bias_w.shape[-1]),
        decomposed=lambda q, k, v, t, overwrite_v: masa_decomposed_sdpa(
            q, k, v, t.bias_h, t.bias_w)),
    'blocked': FastKernel(
        full=lambda q, k, v, t, overwrite_v: masa_full_blocked(q, k, v, t.bias_h, t.bias_w),
        decomposed=lambda q, k, v, t, overwrite_v: masa_decomposed_blocked(
            q, k, v, t.bias_h, t.bias_w, overwrite_v=overwrite_v)),
    'flex': FastKernel(  # sdpa where FlexAttention cannot run compiled (masa_flex.py)
        full=lambda q, k, v, t, overwrite_v: masa_full_flex(
            q, k, v, t.decay, t.bias_w.shape[-1],
            fallback=lambda: FAST_KERNELS['sdpa'].full(q, k, v, t, False)),
        decomposed=lambda q, k, v, t, overwrite_v: masa_decomposed_flex(
            q, k, v, t.decay,
            fallback=lambda: FAST_KERNELS['sdpa'].decomposed(q, k, v, t, False))),
}
ATTN_IMPLS = ('auto', 'reference') + tuple(FAST_KERNELS)


def resolve_impl(impl: str, device: torch.device) -> str:
    """``auto`` -> ``blocked`` on CPU, the fastest there in tools/benchmark.py's measurements
    (``sdpa`` on CPU is no faster than the reference; docs/benchmarks.md), and ``sdpa``
    elsewhere: on GPU it dispatches to the fused memory-efficient kernel, which takes the bias
    (not yet measured on a GPU; docs/gpu.md)."""
    if impl not in ATTN_IMPLS:
        raise ValueError(f'attn_impl must be one of {ATTN_IMPLS}, got {impl!r}')
    if impl == 'auto':
        return 'blocked' if device.type == 'cpu' else 'sdpa'
    return impl


def exporting() -> bool:
    """Whether the model is being traced for export (TorchScript/ONNX tracing, ``torch.export``
    or the dynamo ONNX exporter). The fast kernels' per-size table cache, in-place steps and
    autograd Functions do not trace faithfully, and the reference's tables are constants of
    the traced size, so :func:`masa` then runs the export form (:mod:`.masa_export`): the
    same function as plain tensor operations, its tables computed from the input's shape."""
    return is_exporting()


def masa(q: Tensor, k: Tensor, v: Tensor, relpos: RelPos2d, decomposed: bool, impl: str,
         scale: float) -> Tensor:
    """MaSA of the projections ``q``, ``k``, ``v`` (``(B, H, W, heads, d)``, not yet rotated
    or scaled) with ``relpos``'s tables, by kernel ``impl``; returns ``(B, H, W, heads, d)``.

    The arguments must be fresh tensors the caller does not use afterwards: in inference the
    fast kernels rotate ``q`` and ``k`` in place and may write the output over ``v``. Under
    export every kernel runs as the export form (:func:`exporting`).
    """
    b, h, w, n, d = q.shape
    impl = 'export' if exporting() else resolve_impl(impl, q.device)
    if impl == 'export':
        q, k = export_rotation(q, k, relpos.angle, scale)
        if decomposed:
            return masa_decomposed_export(q, k, v, relpos.decay, relpos.stride)
        full_fn = partial(masa_full_export, decay=relpos.decay, h=h, w=w, stride=relpos.stride)
    elif impl == 'reference':
        sin, cos = relpos.rotary(h, w)
        q = rotary_reference(q, sin, cos)
        k = rotary_reference(k * scale, sin, cos)  # upstream scales k, before the rotation
        if decomposed:
            return masa_decomposed(q, k, v, relpos.axis_bias(h), relpos.axis_bias(w))
        full_fn = partial(masa_full, bias=relpos.grid_bias(h, w))
    else:
        tables = relpos.fast_tables(h, w)
        inference = not torch.is_grad_enabled()
        # The scale rides on q's rotation (upstream scales k: equal up to rounding). Rebinding
        # q and k frees the unrotated projections as soon as they are rotated.
        q = rotary_complex(q, tables.phase * scale, inference)
        k = rotary_complex(k, tables.phase, inference)
        tables = tables._replace(bias_h=tables.bias_h.to(q.dtype),
                                 bias_w=tables.bias_w.to(q.dtype))
        kernel = FAST_KERNELS[impl]
        if decomposed:
            return kernel.decomposed(q, k, v, tables, inference)
        full_fn = partial(kernel.full, t=tables, overwrite_v=inference)
    # Full attention runs on (B, heads, L, d) token sequences: views of the maps' memory.
    out = full_fn(*(t.flatten(1, 2).transpose(1, 2) for t in (q, k, v)))
    return out.transpose(1, 2).reshape(b, h, w, n, d)
