"""Attention kernels of MaSA (Manhattan Self-Attention).

Three implementations compute the same function:

- ``reference``: the upstream algorithm, step by step (explicit logits, bias add, softmax). The
  parity fixtures pin it down; it materialises ``(B, heads, L, L)`` logits and probabilities and,
  in full-attention stages, a ``(heads, L, L)`` decay bias.
- ``sdpa``: :func:`torch.nn.functional.scaled_dot_product_attention` with the decay as an additive
  mask. Full attention is processed in blocks of query rows whose bias rows are generated on the
  fly, and under autograd each block is recomputed in backward instead of stored, so nothing of
  size ``L x L`` is kept: memory grows linearly with the number of tokens.

Tensors use the map-shaped, head-split layout ``(B, H, W, heads, head_dims)``.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from torch import Tensor

ATTN_IMPLS = ('auto', 'reference', 'sdpa', 'blocked')
#: Full attention is split into query blocks once ``heads * L * L`` exceeds this many elements
#: (16M floats = 64 MB); each block's bias then holds about this many.
FULL_BIAS_BLOCK_ELEMS = 1 << 24
#: Logits elements per block of the ``blocked`` kernel (4M floats = 16 MB).
BLOCK_ELEMS = 1 << 22


def full_bias_fits(num_heads: int, length: int) -> bool:
    """Whether a whole ``(heads, L, L)`` bias is small enough to build (and cache)."""
    return num_heads * length * length <= FULL_BIAS_BLOCK_ELEMS


def resolve_impl(impl: str, x: Tensor) -> str:
    """``auto`` -> ``blocked`` on CPU (measured with tools/benchmark.py: 2.1x faster and 2.6x
    less memory for RMT-T inference at 1344x800, time-neutral with 1.6x less memory for RMT-S)
    and ``sdpa`` elsewhere (fused kernels that take an additive bias; not yet measured)."""
    if impl not in ATTN_IMPLS:
        raise ValueError(f'attn_impl must be one of {ATTN_IMPLS}, got {impl!r}')
    if impl == 'auto':
        return 'blocked' if x.device.type == 'cpu' else 'sdpa'
    return impl


def rotate_every_two(x: Tensor) -> Tensor:
    """Map each pair ``(x0, x1)`` of the last dim to ``(-x1, x0)`` (interleaved rotary)."""
    return torch.stack((-x[..., 1::2], x[..., ::2]), dim=-1).flatten(-2)


def rotary_reference(x: Tensor, sin: Tensor, cos: Tensor) -> Tensor:
    """``x * cos + rotate_every_two(x) * sin``, as upstream; sin/cos broadcast over heads."""
    return x * cos + rotate_every_two(x) * sin


def rotary_complex(x: Tensor, phase: Tensor) -> Tensor:
    """The same rotation as one complex product: pairs ``(x0, x1)`` are ``x0 + i x1`` and the
    interleaved angle table makes the rotation ``(x0 + i x1) * exp(i t theta)``."""
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * phase).flatten(-2).to(x.dtype)


# ----------------------------------------------------------------------------- reference


def masa_full(q: Tensor, k: Tensor, v: Tensor, bias: Tensor) -> Tensor:
    """Reference softmax attention over all ``L = H * W`` tokens with a ``(heads, L, L)`` bias.
    ``k`` is pre-scaled."""
    b, h, w, n, d = q.shape
    q, k, v = (t.reshape(b, h * w, n, d).transpose(1, 2) for t in (q, k, v))
    attn = (q @ k.transpose(-1, -2) + bias).softmax(dim=-1)
    return (attn @ v).transpose(1, 2).reshape(b, h, w, n, d)


def masa_decomposed(q: Tensor, k: Tensor, v: Tensor, bias_h: Tensor, bias_w: Tensor) -> Tensor:
    """Reference axial attention: within each row (W axis) first, then within each column
    (H axis), reusing the same q and k; ``bias_h``/``bias_w`` are ``(heads, H, H)``/
    ``(heads, W, W)``. ``k`` is pre-scaled."""
    # Rows: (B, H, heads, W, d)
    q_w, k_w, v_w = (t.transpose(2, 3) for t in (q, k, v))
    attn = (q_w @ k_w.transpose(-1, -2) + bias_w).softmax(dim=-1)
    v = attn @ v_w
    # Columns: (B, W, heads, H, d)
    q_h, k_h = q.permute(0, 2, 3, 1, 4), k.permute(0, 2, 3, 1, 4)
    attn = (q_h @ k_h.transpose(-1, -2) + bias_h).softmax(dim=-1)
    out = attn @ v.permute(0, 3, 2, 1, 4)
    return out.permute(0, 3, 1, 2, 4)


# ----------------------------------------------------------------------------- fast


def _sdpa_axis(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, scale: float) -> Tensor:
    """SDPA over the second-to-last axis of ``(..., heads, N, d)`` batches."""
    lead = q.shape[:-3]
    q, k, v = (t.reshape(-1, *t.shape[-3:]) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)
    return out.view(*lead, *out.shape[-3:])


def masa_decomposed_sdpa(q: Tensor, k: Tensor, v: Tensor, bias_h: Tensor, bias_w: Tensor,
                         scale: float) -> Tensor:
    """Axial attention (W then H) through SDPA; ``k`` is *not* pre-scaled."""
    out_w = _sdpa_axis(q.transpose(2, 3), k.transpose(2, 3), v.transpose(2, 3), bias_w, scale)
    out = _sdpa_axis(q.permute(0, 2, 3, 1, 4), k.permute(0, 2, 3, 1, 4),
                     out_w.permute(0, 3, 2, 1, 4), bias_h, scale)  # (B, W, heads, H, d)
    return out.permute(0, 3, 1, 2, 4)


def grid_coords(h: int, w: int, device: torch.device) -> Tuple[Tensor, Tensor]:
    """Row and column of each raster-ordered token, as floats."""
    rows = torch.arange(h, device=device, dtype=torch.float32).repeat_interleave(w)
    cols = torch.arange(w, device=device, dtype=torch.float32).repeat(h)
    return rows, cols


def _full_block(q: Tensor, k: Tensor, v: Tensor, decay: Tensor, rows: Tensor, cols: Tensor,
                start: int, scale: float) -> Tensor:
    """Attention of the query rows ``start:start + q.shape[2]`` with their bias made here."""
    stop = start + q.shape[2]
    dist = (rows[start:stop, None] - rows).abs_() + (cols[start:stop, None] - cols).abs_()
    bias = (dist * decay[:, None, None]).to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)


def masa_full_sdpa(q: Tensor, k: Tensor, v: Tensor, decay: Tensor, scale: float) -> Tensor:
    """Full attention through SDPA; ``k`` is *not* pre-scaled.

    The bias is made on the fly: whole for small maps, else block by block over query rows so
    it never exists whole, each block checkpointed under autograd.
    """
    b, h, w, n, d = q.shape
    length = h * w
    q, k, v = (t.reshape(b, length, n, d).transpose(1, 2) for t in (q, k, v))
    rows, cols = grid_coords(h, w, q.device)
    if full_bias_fits(n, length):
        out = _full_block(q, k, v, decay, rows, cols, 0, scale)
    else:
        step = max(1, FULL_BIAS_BLOCK_ELEMS // (n * length))
        grad = _requires_grad(q, k, v)
        blocks = []
        for start in range(0, length, step):
            args = (q[:, :, start:start + step], k, v, decay, rows, cols, start, scale)
            blocks.append(cp.checkpoint(_full_block, *args, use_reentrant=False)
                          if grad else _full_block(*args))
        out = torch.cat(blocks, dim=2)
    return out.transpose(1, 2).reshape(b, h, w, n, d)


# ----------------------------------------------------------------------------- blocked


def _softmax_into(x: Tensor, out: Tensor) -> Tensor:
    return torch.ops.aten._softmax.out(x, -1, False, out=out)


def _attend(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, scale: float,
            workspace: Optional[Tuple[Tensor, Tensor]] = None) -> Tensor:
    """``softmax(scale * q k^T + bias) v``. With a ``workspace`` (no-grad only) the logits and
    probabilities go into its two preallocated buffers: on CPU, fresh block-sized temporaries
    fragment the heap and grow the resident memory block after block."""
    if workspace is None:
        attn = (q * scale) @ k.transpose(-1, -2)
        attn += bias
        return attn.softmax(dim=-1) @ v
    logits, probs = (buf[:, :q.shape[1]] for buf in workspace)
    torch.matmul(q * scale, k.transpose(-1, -2), out=logits)
    logits += bias
    return _softmax_into(logits, probs) @ v


def _workspace(q: Tensor, step: int, length: int, grad: bool) -> Optional[Tuple[Tensor, Tensor]]:
    if grad:
        return None
    shape = (q.shape[0], min(step, q.shape[1]), *q.shape[2:4], length)
    return q.new_empty(shape), q.new_empty(shape)


def _requires_grad(*tensors: Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _attend_axis_blocked(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, scale: float) -> Tensor:
    """Attention along the second-to-last axis of ``(B, M, heads, N, d)``, in blocks over M."""
    n, length = q.shape[2], q.shape[3]
    step = max(1, BLOCK_ELEMS // (q.shape[0] * n * length * length))
    workspace = _workspace(q, step, length, _requires_grad(q, k, v))
    outs = [_attend(q[:, i:i + step], k[:, i:i + step], v[:, i:i + step], bias, scale, workspace)
            for i in range(0, q.shape[1], step)]
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)


def masa_decomposed_blocked(q: Tensor, k: Tensor, v: Tensor, bias_h: Tensor, bias_w: Tensor,
                            scale: float) -> Tensor:
    """Axial attention (W then H) in blocks of rows / columns; ``k`` is *not* pre-scaled."""
    out_w = _attend_axis_blocked(q.transpose(2, 3), k.transpose(2, 3), v.transpose(2, 3),
                                 bias_w, scale)  # (B, H, heads, W, d)
    out = _attend_axis_blocked(q.permute(0, 2, 3, 1, 4), k.permute(0, 2, 3, 1, 4),
                               out_w.permute(0, 3, 2, 1, 4), bias_h, scale)  # (B, W, heads, H, d)
    return out.permute(0, 3, 1, 2, 4)


def _full_rows_block(q: Tensor, k_t: Tensor, v: Tensor, bias_h: Tensor, bias_w: Tensor,
                     row0: int, scale: float,
                     workspace: Optional[Tuple[Tensor, Tensor]] = None) -> Tensor:
    """Queries of image rows ``row0:row0 + q.shape[1] // W`` against all keys, for one image.

    The bias block ``decay * (|dy| + |dx|)`` is one broadcast add of the per-axis biases; with
    a ``workspace`` (no-grad only) bias, logits and probabilities reuse its two buffers.
    """
    n, block, _ = q.shape
    h, w = bias_h.shape[1], bias_w.shape[1]
    rows = block // w
    bias_rows = bias_h[:, row0:row0 + rows, None, :, None]
    if workspace is None:
        bias = (bias_rows + bias_w[:, None, :, None, :]).reshape(n, block, h * w)
        return torch.baddbmm(bias, q, k_t, alpha=scale).softmax(-1) @ v
    bias, logits = (buf[:, :block] for buf in workspace)
    torch.add(bias_rows, bias_w[:, None, :, None, :], out=bias.view(n, rows, w, h, w))
    torch.baddbmm(bias, q, k_t, alpha=scale, out=logits)
    return _softmax_into(logits, bias) @ v


def masa_full_blocked(q: Tensor, k: Tensor, v: Tensor, bias_h: Tensor, bias_w: Tensor,
                      scale: float) -> Tensor:
    """Full attention in blocks of whole image rows; ``k`` is *not* pre-scaled. Under autograd
    each block is checkpointed, so no ``L x L`` tensor is kept for backward."""
    b, h, w, n, d = q.shape
    length = h * w
    q, k, v = (t.reshape(b, length, n, d).transpose(1, 2) for t in (q, k, v))
    rows = max(1, min(h, BLOCK_ELEMS // (n * length * w)))
    grad = _requires_grad(q, k, v)
    workspace = None if grad else tuple(q.new_empty(n, rows * w, length) for _ in range(2))
    images = []
    for i in range(b):
        k_t = k[i].transpose(-1, -2)
        blocks = []
        for row0 in range(0, h, rows):
            args = (q[i, :, row0 * w:(row0 + rows) * w], k_t, v[i], bias_h, bias_w, row0, scale)
            blocks.append(cp.checkpoint(_full_rows_block, *args, use_reentrant=False)
                          if grad else _full_rows_block(*args, workspace))
        images.append(torch.cat(blocks, dim=1))
    return torch.stack(images).transpose(1, 2).reshape(b, h, w, n, d)
