"""Attention kernels of MaSA (Manhattan Self-Attention).

Tensors use the head-split, map-shaped layout ``(B, heads, H, W, head_dims)``; q and k arrive
already rotated (and k already scaled). Biases are additive log-space decays.
"""
import torch
from torch import Tensor


def rotate_every_two(x: Tensor) -> Tensor:
    """Map each pair ``(x0, x1)`` of the last dim to ``(-x1, x0)`` (interleaved rotary)."""
    return torch.stack((-x[..., 1::2], x[..., ::2]), dim=-1).flatten(-2)


def masa_full(q: Tensor, k: Tensor, v: Tensor, bias: Tensor) -> Tensor:
    """Softmax attention over all ``L = H * W`` tokens with a ``(heads, L, L)`` bias."""
    b, n, h, w, d = q.shape
    attn = q.reshape(b, n, h * w, d) @ k.reshape(b, n, h * w, d).transpose(-1, -2)
    attn = (attn + bias).softmax(dim=-1)
    return (attn @ v.reshape(b, n, h * w, d)).view(b, n, h, w, d)


def masa_decomposed(q: Tensor, k: Tensor, v: Tensor, bias_h: Tensor, bias_w: Tensor) -> Tensor:
    """Axial attention: within each row (W axis) first, then within each column (H axis),
    reusing the same q and k; ``bias_h``/``bias_w`` are ``(heads, H, H)``/``(heads, W, W)``."""
    # Rows: (B, H, heads, W, d)
    q_w, k_w = q.transpose(1, 2), k.transpose(1, 2)
    attn = (q_w @ k_w.transpose(-1, -2) + bias_w).softmax(dim=-1)
    v = attn @ v.transpose(1, 2)
    # Columns: (B, W, heads, H, d)
    q_h, k_h = q.permute(0, 3, 1, 2, 4), k.permute(0, 3, 1, 2, 4)
    attn = (q_h @ k_h.transpose(-1, -2) + bias_h).softmax(dim=-1)
    out = attn @ v.permute(0, 3, 2, 1, 4)
    return out.permute(0, 2, 3, 1, 4)
