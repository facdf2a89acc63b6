"""The ``flex`` MaSA kernels: FlexAttention with the Manhattan decay computed in ``score_mod``.

:func:`torch.nn.attention.flex_attention` fuses ``softmax(q k^T + score_mod) v`` into one
generated kernel (forward and, on CUDA, backward). MaSA's decay is a function of the two token
indices, so ``score_mod`` computes it from them: ``decay_h * |i - j|`` along a line (axial), and
``decay_h * (|dy| + |dx|)`` with the rows and columns recovered from the raster indices on the
``h x w`` grid (full). No ``L x L`` bias ever exists, in forward or backward.

FlexAttention only fuses when compiled: :func:`compiled` wraps the line and grid attention
functions in :func:`torch.compile` once per process. A new shape recompiles, then dynamo's
cache serves it; from the second size on, dynamo marks the changed dimensions dynamic, so
further sizes (multi-scale training) mostly reuse one kernel. Past dynamo's
``recompile_limit`` per function, calls fall back to unfused eager FlexAttention, with torch's
warning.

FlexAttention exists from torch 2.5 and is imported on first use. CPU runs inference only: torch
generates no FlexAttention backward for CPU, so training there raises an error.

Tensors use the map-shaped, head-split layout ``(B, H, W, heads, head_dims)``; ``q`` comes
rotated and multiplied by the attention scale.
"""
from typing import Callable, Dict

import torch
from torch import Tensor

from .masa_blocked import requires_grad

_COMPILED: Dict[str, Callable] = {}
_FLEX: Dict[str, Callable] = {}


def _line_attention(q: Tensor, k: Tensor, v: Tensor, decay: Tensor) -> Tensor:
    """``softmax(q k^T + decay_h * |i - j|) v`` (the axial bias: exactly symmetric ALiBi)."""

    def score_mod(score, b, h, q_idx, kv_idx):
        return score + decay[h] * (q_idx - kv_idx).abs()

    return _FLEX['fn'](q, k, v, score_mod=score_mod, scale=1.0)


def _grid_attention(q: Tensor, k: Tensor, v: Tensor, decay: Tensor, width: int) -> Tensor:
    """``softmax(q k^T + decay_h * (|dy| + |dx|)) v`` between raster indices of a map ``width``
    tokens wide."""

    def score_mod(score, b, h, q_idx, kv_idx):
        dist = ((q_idx // width - kv_idx // width).abs()
                + (q_idx % width - kv_idx % width).abs())
        return score + decay[h] * dist

    return _FLEX['fn'](q, k, v, score_mod=score_mod, scale=1.0)


def compiled(fn: Callable) -> Callable:
    """``torch.compile(fn)``, made on first use and shared by every call. Each of the two
    attention functions is its own compiled frame, with its own dynamo cache entries."""
    if fn.__name__ not in _COMPILED:
        try:
            from torch.nn.attention.flex_attention import flex_attention
        except ImportError as err:
            raise RuntimeError(
                f"attn_impl='flex' needs torch.nn.attention.flex_attention (torch >= 2.5); "
                f'torch {torch.__version__} lacks it: use attn_impl=\'sdpa\' or \'blocked\''
            ) from err
        _FLEX['fn'] = flex_attention
        _COMPILED[fn.__name__] = torch.compile(fn)
    return _COMPILED[fn.__name__]


def _check_trainable(*tensors: Tensor) -> None:
    if tensors[0].device.type == 'cpu' and requires_grad(*tensors):
        raise RuntimeError(
            "attn_impl='flex' cannot train on CPU: torch has no FlexAttention backward for CPU "
            "(inference works); use attn_impl='blocked' or 'sdpa' to train on CPU")


def _axis(q: Tensor, k: Tensor, v: Tensor, decay: Tensor) -> Tensor:
    """Attention along the second-to-last axis of ``(..., heads, N, d)`` tensors."""
    lead = q.shape[:-3]
    q, k, v = (t.reshape(-1, *t.shape[-3:]) for t in (q, k, v))
    out = compiled(_line_attention)(q, k, v, decay)
    return out.view(*lead, *out.shape[-3:])


def masa_full_flex(q: Tensor, k: Tensor, v: Tensor, decay: Tensor) -> Tensor:
    """Full attention over the ``H * W`` tokens of each map."""
    _check_trainable(q, k, v)
    b, h, w, n, d = q.shape
    q, k, v = (t.reshape(b, h * w, n, d).transpose(1, 2) for t in (q, k, v))
    out = compiled(_grid_attention)(q, k, v, decay, w)
    return out.transpose(1, 2).reshape(b, h, w, n, d)


def masa_decomposed_flex(q: Tensor, k: Tensor, v: Tensor, decay: Tensor) -> Tensor:
    """Axial attention: within each row (W axis), then within each column (H axis)."""
    _check_trainable(q, k, v)
    out_w = _axis(q.transpose(2, 3), k.transpose(2, 3), v.transpose(2, 3), decay)
    out = _axis(q.permute(0, 2, 3, 1, 4), k.permute(0, 2, 3, 1, 4),
                out_w.permute(0, 3, 2, 1, 4), decay)  # (B, W, heads, H, d)
    return out.permute(0, 3, 1, 2, 4)
