"""The ``blocked`` MaSA kernels: the attention computed in cache-sized blocks.

Both kernels are autograd Functions with a FlashAttention-style backward: forward keeps only the
output and each query's log-sum-exp, backward recomputes one block of probabilities at a time.
Nothing of size ``L x L`` (or ``N x N`` per row) outlives a block, in inference or in training,
and the block buffers are allocated once per call: on CPU, fresh block-sized temporaries
fragment the heap and grow the resident memory block after block. Full-attention bias blocks are
one broadcast add of the per-axis biases; axial blocks are gathered from the map as they go.

Tensors use the map-shaped, head-split layout ``(B, H, W, heads, head_dims)``; ``q`` comes
already multiplied by the attention scale.
"""
import math
from typing import Iterator, Optional, Tuple

import torch
from torch import Tensor

from .budgets import BLOCK_ELEMS


def _softmax_into(x: Tensor, out: Tensor) -> Tensor:
    return torch.ops.aten._softmax.out(x, -1, False, out=out)


def _log_sum_exp(logits: Tensor, probs: Tensor) -> Tensor:
    """Row log-sum-exp of ``logits`` given ``probs = softmax(logits)``: at the row maximum
    ``p = exp(s - lse)``, and ``p >= 1 / N`` there, so the log is well conditioned."""
    return logits.amax(-1, keepdim=True) - probs.amax(-1, keepdim=True).log()


def requires_grad(*tensors: Tensor) -> bool:
    """Whether autograd records an op on ``tensors`` (then the kernels keep what backward
    needs)."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _buffers(q: Tensor, unit: int) -> Tuple[Tensor, Tensor]:
    """Two flat block buffers of ``BLOCK_ELEMS``, or of ``unit`` elements (the smallest block
    a kernel can split into) if that is larger; blocks take :func:`_view` s of them."""
    size = max(BLOCK_ELEMS, unit)
    return q.new_empty(size), q.new_empty(size)


def _view(buf: Tensor, *shape: int) -> Tensor:
    """A contiguous ``shape`` view of the start of ``buf``. (Slicing a full-block buffer for a
    smaller last block would give a non-contiguous view, which ``_softmax.out`` mishandles.)"""
    return buf[:math.prod(shape)].view(shape)


class _AxisAttention(torch.autograd.Function):
    """``softmax(q k^T + bias) v`` along the ``N`` axis of ``(B, M, N, heads, d)`` maps of
    any strides: the W axis of a ``(B, H, W, heads, d)`` map, or the H axis of its transpose.
    ``q`` is pre-scaled, ``bias`` is ``(heads, N, N)`` and constant.

    Blocks of whole lines are gathered into head-major order as they are processed and their
    results scattered back, so no transposed copy of a whole map is ever made.
    """

    @staticmethod
    def _blocks(q: Tensor) -> Iterator[tuple]:
        """Index of each block: one image, as many lines as fit in ``BLOCK_ELEMS``."""
        b, m, length, n = q.shape[:4]
        step = max(1, min(m, BLOCK_ELEMS // (n * length * length)))
        for i in range(b):
            for j in range(0, m, step):
                yield i, slice(j, j + step)

    @staticmethod
    def _gather(t: Tensor) -> Tensor:
        """``(lines, N, heads, e)`` -> contiguous ``(lines * heads, N, e)``."""
        return t.transpose(1, 2).reshape(-1, t.shape[1], t.shape[-1])

    @staticmethod
    def _scatter(result: Tensor, dest: Tensor) -> None:
        dest.copy_(result.view(dest.shape[0], dest.shape[2], *result.shape[1:]).transpose(1, 2))

    @staticmethod
    def _logits(q: Tensor, k: Tensor, bias: Tensor, buf: Tensor,
                shift: Optional[Tensor] = None) -> Tensor:
        """``q k^T + bias (- shift)`` of one block into ``buf``: the bias is written first and
        the product accumulated onto it."""
        logits = _view(buf, q.shape[0], q.shape[1], k.shape[1])
        target = logits.view(-1, *bias.shape)
        if shift is None:
            target.copy_(bias.expand_as(target))
        else:
            torch.sub(bias, shift, out=target)
        return logits.baddbmm_(q, k.transpose(-1, -2))

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, bias: Tensor, grad: bool,
                overwrite_v: bool) -> Tensor:
        logits_buf, probs_buf = _buffers(q, bias.numel())
        # Each block reads its own lines of v before writing the same lines of the output.
        out = v if overwrite_v else torch.empty_like(q)
        if overwrite_v:
            ctx.mark_dirty(v)
        b, m, length, n = q.shape[:4]
        lse = q.new_empty(b, m, n, length, 1) if grad else None
        gather = _AxisAttention._gather
        for idx in _AxisAttention._blocks(q):
            logits = _AxisAttention._logits(gather(q[idx]), gather(k[idx]), bias, logits_buf)
            probs = _softmax_into(logits, _view(probs_buf, *logits.shape))
            _AxisAttention._scatter(probs @ gather(v[idx]), out[idx])
            if grad:
                lse[idx] = _log_sum_exp(logits, probs).view_as(lse[idx])
        if grad:
            ctx.save_for_backward(q, k, v, bias, out, lse)
        return out

    @staticmethod
    def backward(ctx, dout: Tensor):
        q, k, v, bias, out, lse = ctx.saved_tensors
        neg_delta = -(dout * out).sum(-1, keepdim=True)
        probs_buf, dlogits_buf = _buffers(q, bias.numel())
        dq, dk, dv = (torch.empty_like(t) for t in (q, k, v))
        gather, scatter = _AxisAttention._gather, _AxisAttention._scatter
        for idx in _AxisAttention._blocks(q):
            q_blk, k_blk, v_blk, dout_blk = (gather(t[idx]) for t in (q, k, v, dout))
            probs = _AxisAttention._logits(q_blk, k_blk, bias, probs_buf, shift=lse[idx]).exp_()
            scatter(probs.transpose(-1, -2) @ dout_blk, dv[idx])
            # dlogits = probs * (dout v^T - delta)
            dlogits = torch.baddbmm(gather(neg_delta[idx]), dout_blk, v_blk.transpose(-1, -2),
                                    out=_view(dlogits_buf, *probs.shape))
            dlogits *= probs
            scatter(dlogits @ k_blk, dq[idx])
            scatter(dlogits.transpose(-1, -2) @ q_blk, dk[idx])
        return dq, dk, dv, None, None, None


def masa_decomposed_blocked(q: Tensor, k: Tensor, v: Tensor, bias_h: Tensor, bias_w: Tensor,
                            overwrite_v: bool = False) -> Tensor:
    """Axial attention (W then H) in blocks of rows / columns; ``q`` is pre-scaled.
    ``overwrite_v`` (inference only) writes both passes' outputs into ``v``'s memory."""
    grad = requires_grad(q, k, v)
    if grad and overwrite_v:
        raise ValueError('overwrite_v is for inference only')
    out_w = _AxisAttention.apply(q, k, v, bias_w, grad, overwrite_v)
    rows_first = (t.transpose(1, 2) for t in (q, k, out_w))
    return _AxisAttention.apply(*rows_first, bias_h, grad, overwrite_v).transpose(1, 2)


class _FullAttention(torch.autograd.Function):
    """Softmax attention over all ``L = H * W`` tokens of ``(B, heads, L, d)`` tensors, in
    blocks of (image, heads, whole image rows of queries). The bias block
    ``decay * (|dy| + |dx|)`` is one broadcast add of the per-axis biases ``(heads, H, H)`` and
    ``(heads, W, W)``."""

    @staticmethod
    def _blocks(q: Tensor, bias_h: Tensor, bias_w: Tensor) -> Iterator[tuple]:
        """``(image, heads slice, first row, rows, token slice)`` per block: several rows of all
        heads, or one row of as many heads as fit in ``BLOCK_ELEMS``."""
        b, n, length = q.shape[:3]
        h, w = bias_h.shape[1], bias_w.shape[1]
        per_row = length * w  # elements per head and image row
        heads = max(1, min(n, BLOCK_ELEMS // per_row))
        rows = max(1, min(h, BLOCK_ELEMS // (heads * per_row)))
        for i in range(b):
            for h0 in range(0, n, heads):
                for row0 in range(0, h, rows):
                    count = min(rows, h - row0)
                    yield (i, slice(h0, h0 + heads), row0, count,
                           slice(row0 * w, (row0 + count) * w))

    @staticmethod
    def _bias(bias_h: Tensor, bias_w: Tensor, row0: int, rows: int, buf: Tensor,
              shift: Optional[Tensor] = None) -> Tensor:
        """The ``(heads, rows * W, L)`` bias of a block into ``buf``, minus ``shift`` (one
        value per query) if given: still a single pass over the block."""
        n, w = bias_w.shape[:2]
        h = bias_h.shape[1]
        rows_bias = bias_h[:, row0:row0 + rows, None, :, None]
        if shift is not None:
            rows_bias = rows_bias - shift.view(n, rows, w, 1, 1)
        torch.add(rows_bias, bias_w[:, None, :, None, :], out=_view(buf, n, rows, w, h, w))
        return _view(buf, n, rows * w, h * w)

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, bias_h: Tensor, bias_w: Tensor,
                grad: bool) -> Tensor:
        bias_buf, logits_buf = _buffers(q, q.shape[2] * bias_w.shape[1])  # one head's row
        out = q.new_empty(q.shape)
        lse = q.new_empty(*q.shape[:-1], 1) if grad else None
        for i, hs, row0, rows, tokens in _FullAttention._blocks(q, bias_h, bias_w):
            bias = _FullAttention._bias(bias_h[hs], bias_w[hs], row0, rows, bias_buf)
            logits = torch.baddbmm(bias, q[i, hs, tokens], k[i, hs].transpose(-1, -2),
                                   out=_view(logits_buf, *bias.shape))
            probs = _softmax_into(logits, bias)
            torch.matmul(probs, v[i, hs], out=out[i, hs, tokens])
            if grad:
                lse[i, hs, tokens] = _log_sum_exp(logits, probs)
        if grad:
            ctx.save_for_backward(q, k, v, bias_h, bias_w, out, lse)
        return out

    @staticmethod
    def backward(ctx, dout: Tensor):
        q, k, v, bias_h, bias_w, out, lse = ctx.saved_tensors
        neg_delta = -(dout * out).sum(-1, keepdim=True)
        probs_buf, dlogits_buf = _buffers(q, q.shape[2] * bias_w.shape[1])
        dq = q.new_empty(q.shape)
        dk, dv = k.new_zeros(k.shape), v.new_zeros(v.shape)
        for i, hs, row0, rows, tokens in _FullAttention._blocks(q, bias_h, bias_w):
            q_blk, dout_blk = q[i, hs, tokens], dout[i, hs, tokens]
            # probs = exp(q k^T + bias - lse), recomputed in place
            probs = _FullAttention._bias(bias_h[hs], bias_w[hs], row0, rows, probs_buf,
                                         shift=lse[i, hs, tokens])
            probs.baddbmm_(q_blk, k[i, hs].transpose(-1, -2)).exp_()
            dv[i, hs].baddbmm_(probs.transpose(-1, -2), dout_blk)
            # dlogits = probs * (dout v^T - delta)
            dlogits = torch.baddbmm(neg_delta[i, hs, tokens], dout_blk, v[i, hs].transpose(-1, -2),
                                    out=_view(dlogits_buf, *probs.shape))
            dlogits *= probs
            torch.matmul(dlogits, k[i, hs], out=dq[i, hs, tokens])
            dk[i, hs].baddbmm_(dlogits.transpose(-1, -2), q_blk)
        return dq, dk, dv, None, None, None


def masa_full_blocked(q: Tensor, k: Tensor, v: Tensor, bias_h: Tensor, bias_w: Tensor) -> Tensor:
    """Full attention on ``(B, heads, L, d)`` sequences in blocks of whole image rows; ``q`` is
    pre-scaled. No ``L x L`` tensor is kept for backward."""
    q, k, v = (t.contiguous() for t in (q, k, v))  # the blocks are slices of each head
    return _FullAttention.apply(q, k, v, bias_h, bias_w, requires_grad(q, k, v))
