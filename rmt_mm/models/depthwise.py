"""Depthwise 'same' convolution with a faster weight gradient for wide kernels.

On CPU, oneDNN's depthwise weight-gradient kernel is fast only for kernels at most three columns
wide; RMT's LePE is 5x5 (tools/benchmark.py measures both paths). The weight gradient is a sum over
columns, so it splits exactly into slabs of at most three kernel columns, each computed on the
matching column window of the width-padded input. Forward, input and bias gradients are the
plain op; the weight gradient equals the plain one to rounding (the reduction order differs).
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..compat import autocast_dtype

#: Widest kernel slab whose weight gradient oneDNN computes at full speed.
SLAB_COLUMNS = 3


def _same_conv(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    kh, kw = weight.shape[-2:]
    return F.conv2d(x, weight, bias, 1, (kh // 2, kw // 2), 1, weight.shape[0])


def _conv_grads(grad: Tensor, x: Tensor, weight: Tensor, padding: Tuple[int, int],
                input_grad: bool) -> Tensor:
    """The input (``input_grad``) or weight gradient of a stride-1 depthwise conv. The aten op
    takes the real ``x``: ``torch.nn.grad.conv2d_input`` passes an expanded dummy instead, which
    sends oneDNN down a path 8x slower."""
    grads = torch.ops.aten.convolution_backward(
        grad, x, weight, None, [1, 1], list(padding), [1, 1], False, [0, 0], weight.shape[0],
        [input_grad, not input_grad, False])
    return grads[0] if input_grad else grads[1]


def _weight_grad_in_slabs(grad: Tensor, x: Tensor, weight: Tensor) -> Tensor:
    kh, kw = weight.shape[-2:]
    b, c, h, w = x.shape
    # Pad the width only (the height padding stays the conv's own), keeping x's memory format.
    # Written by hand: F.pad on a channels-last map is several times slower.
    fmt = (torch.channels_last if x.is_contiguous(memory_format=torch.channels_last)
           else torch.contiguous_format)
    pad = kw // 2
    padded = torch.empty(b, c, h, w + 2 * pad, dtype=x.dtype, device=x.device, memory_format=fmt)
    padded[..., :pad] = 0
    padded[..., pad + w:] = 0
    padded[..., pad:pad + w] = x
    slabs = []
    for c0 in range(0, kw, SLAB_COLUMNS):
        cols = min(SLAB_COLUMNS, kw - c0)
        slabs.append(_conv_grads(grad, padded[..., c0:c0 + w + cols - 1],
                                 weight[..., c0:c0 + cols], (kh // 2, 0), input_grad=False))
    return torch.cat(slabs, dim=-1)


class _DepthwiseConv(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _same_conv(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tuple[Optional[Tensor], ...]:
        x, weight = ctx.saved_tensors
        kh, kw = weight.shape[-2:]
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _conv_grads(grad, x, weight, (kh // 2, kw // 2), input_grad=True)
        if ctx.needs_input_grad[1]:
            grad_w = _weight_grad_in_slabs(grad, x, weight)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2, 3))
        return grad_x, grad_w, grad_b


def _as_autocast_would(x: Tensor, weight: Tensor,
                       bias: Optional[Tensor]) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """The operands in the dtype autocast would run the conv in: the custom backward must see
    the tensors the forward computed with (autograd casts the gradients back)."""
    dtype = autocast_dtype(x.device.type)
    if dtype is None:
        return x, weight, bias
    return x.to(dtype), weight.to(dtype), None if bias is None else bias.to(dtype)


def depthwise_conv2d(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """Stride-1 depthwise conv with 'same' zero padding (odd kernel sizes) of an NCHW tensor in
    any memory format; the custom backward only where it was measured to pay: on CPU, for
    kernels wider than a slab."""
    if weight.shape[-1] <= SLAB_COLUMNS or not x.is_cpu or not torch.is_grad_enabled():
        return _same_conv(x, weight, bias)
    return _DepthwiseConv.apply(*_as_autocast_would(x, weight, bias))
