"""Attention kernels of MaSA (Manhattan Self-Attention).

Two implementations compute the same function:

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

ATTN_IMPLS = ('auto', 'reference', 'sdpa')
#: Full attention is split into query blocks once ``heads * L * L`` exceeds this many elements
#: (16M floats = 64 MB); each block's bias then holds about this many.
FULL_BIAS_BLOCK_ELEMS = 1 << 24


def full_bias_fits(num_heads: int, length: int) -> bool:
    """Whether a whole ``(heads, L, L)`` bias is small enough to build (and cache)."""
    return num_heads * length * length <= FULL_BIAS_BLOCK_ELEMS


def resolve_impl(impl: str, x: Tensor) -> str:
    """``auto`` -> the measured-faster path (see tools/benchmark.py and the README): SDPA
    wins on CPU (float32) and on CUDA (the memory-efficient kernel takes the bias)."""
    if impl not in ATTN_IMPLS:
        raise ValueError(f'attn_impl must be one of {ATTN_IMPLS}, got {impl!r}')
    return 'sdpa' if impl == 'auto' else impl


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


def masa_full_sdpa(q: Tensor, k: Tensor, v: Tensor, decay: Tensor, scale: float,
                   bias: Optional[Tensor] = None) -> Tensor:
    """Full attention through SDPA; ``k`` is *not* pre-scaled.

    Small maps use the cached ``bias`` when given; larger ones go block by block over query
    rows so the bias never exists whole, and under autograd each block is checkpointed.
    """
    b, h, w, n, d = q.shape
    length = h * w
    q, k, v = (t.reshape(b, length, n, d).transpose(1, 2) for t in (q, k, v))
    if full_bias_fits(n, length):
        if bias is None:
            rows, cols = grid_coords(h, w, q.device)
            out = _full_block(q, k, v, decay, rows, cols, 0, scale)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype),
                                                 scale=scale)
    else:
        rows, cols = grid_coords(h, w, q.device)
        step = max(1, FULL_BIAS_BLOCK_ELEMS // (n * length))
        grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
        blocks = []
        for start in range(0, length, step):
            args = (q[:, :, start:start + step], k, v, decay, rows, cols, start, scale)
            blocks.append(cp.checkpoint(_full_block, *args, use_reentrant=False)
                          if grad else _full_block(*args))
        out = torch.cat(blocks, dim=2)
    return out.transpose(1, 2).reshape(b, h, w, n, d)
