"""The export form of MaSA: what :func:`.masa.masa` runs while the model is traced for ONNX.

It computes the reference function with plain tensor operations that every exporter, opset 11
included, writes as standard ONNX operators, and that stay correct at any input size:

- The position tables are computed in the graph from the input's shape (rotary angles from the
  raster index, decay biases from coordinate differences), so nothing depends on the size the
  model was traced at.
- The attention runs in blocks of query lines (map rows, or the rows / columns of the axial
  passes): the graph never holds an ``L x L`` table or score matrix for all heads at once.
  The number of blocks is fixed in the graph; it is planned for an input size
  (:data:`DEFAULT_PLAN`, or :func:`planned_for`'s) so that each block's logits hold about
  :data:`EXPORT_BLOCK_ELEMS` elements there, whatever size the model is traced at. The block
  bounds are computed in the graph, so every input size runs, larger ones with
  proportionally larger blocks.
- The rotary shift pairs channels ``(2i, 2i + 1)`` as upstream but writes the rotated pairs
  as two halves (``[x_even', x_odd']``): the same channel permutation for ``q`` and ``k``, so
  ``q k^T`` is unchanged (up to summation order) while the graph needs no interleaving reshape.

Maps use the head-split layout ``(B, H, W, heads, head_dims)``; full attention gets the
``(B, heads, L, head_dims)`` token sequences :func:`.masa.masa` makes of them.
"""
import math
from contextlib import contextmanager
from typing import Iterator, List, Sequence, Tuple, Union

import torch
from torch import Tensor

from .budgets import EXPORT_BLOCK_ELEMS

#: The input size (H, W) blocks are planned for by default: COCO's test size.
DEFAULT_PLAN = (800, 1344)
_plan = DEFAULT_PLAN

#: A size while tracing: an int, a 0-dim tensor (TorchScript) or a symbol (torch.export).
Size = Union[int, Tensor, torch.SymInt]


@contextmanager
def planned_for(shape: Sequence[int]) -> Iterator[None]:
    """Plan the attention blocks of models exported in this context for ``(H, W)`` inputs."""
    global _plan
    previous, _plan = _plan, (int(shape[0]), int(shape[1]))
    try:
        yield
    finally:
        _plan = previous


def planned_map(stride: int) -> Tuple[int, int]:
    """The map size of a stage of ``stride`` at the planned input size."""
    return math.ceil(_plan[0] / stride), math.ceil(_plan[1] / stride)


def block_bounds(lines: Size, planned_lines: int, planned_elems: int) -> List[Tuple[Size, Size]]:
    """``(start, stop)`` of the blocks that split ``lines`` query lines: as many blocks as
    make ``planned_elems`` logits elements on ``planned_lines`` lines about
    :data:`EXPORT_BLOCK_ELEMS` per block. The bounds are expressions of ``lines``, so the
    graph splits any size evenly (a block is empty when there are fewer lines than blocks)."""
    count = max(1, min(planned_lines, math.ceil(planned_elems / EXPORT_BLOCK_ELEMS)))
    if count == 1:
        return [(0, lines)]
    ends = [(i * lines) // count for i in range(1, count)]
    return list(zip([0] + ends, ends + [lines]))


def rotary_tables(angle: Tensor, h: Size, w: Size) -> Tuple[Tensor, Tensor]:
    """``(h, w, 1, head_dims // 2)`` sin and cos of the raster index ``t`` times each pair's
    frequency (``angle`` holds every frequency twice, as upstream)."""
    t = torch.arange(h * w, device=angle.device).to(angle.dtype)
    phase = (t[:, None] * angle[0::2]).reshape(h, w, 1, -1)
    return phase.sin(), phase.cos()


def rotate_halves(x: Tensor, sin: Tensor, cos: Tensor) -> Tensor:
    """Upstream's rotation of each pair ``(x0, x1)`` to ``(x0 cos - x1 sin, x1 cos + x0 sin)``,
    the results laid out as ``[all x0', all x1']``."""
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.cat((x0 * cos - x1 * sin, x1 * cos + x0 * sin), dim=-1)


def distance(n: Size, device: torch.device) -> Tensor:
    """``(n, n)`` table ``|i - i'|`` as floats."""
    idx = torch.arange(n, device=device).float()
    return (idx[:, None] - idx[None, :]).abs()


def softmax_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor) -> Tensor:
    """``softmax(q k^T + bias) v`` on 4-D ``(batch, heads, L, d)`` tensors, step by step: the
    reference's and the export form's attention. Callers fold every other axis into the batch:
    inductor's attention-fusion patterns assume 4-D operands and fail to compile a 5-D
    ``matmul-softmax-matmul``."""
    return (q @ k.transpose(-1, -2) + bias).softmax(dim=-1) @ v


def _axis_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor,
                    planned: Tuple[int, int]) -> Tensor:
    """Attention along the third axis of ``(B, M, N, heads, d)`` maps, in blocks of lines
    (second axis), ``planned`` being ``(M, N)`` at the planned size; ``bias`` is
    ``(heads, N, N)``. Returns ``(B, M, heads, N, d)``."""
    lines, length = planned
    bounds = block_bounds(q.shape[1], lines, q.shape[3] * lines * length**2)
    out = [softmax_attention(*(t[:, a:b].transpose(2, 3) for t in (q, k, v)), bias)
           for a, b in bounds]
    return out[0] if len(out) == 1 else torch.cat(out, dim=1)


def masa_decomposed_export(q: Tensor, k: Tensor, v: Tensor, decay: Tensor,
                           stride: int) -> Tensor:
    """Axial attention, within each row (W axis) and then within each column (H axis), both
    passes reusing ``q`` and ``k`` (rotated, ``k`` scaled); ``stride`` is the map's."""
    h, w = q.shape[1:3]
    planned_h, planned_w = planned_map(stride)
    bias_h, bias_w = (distance(n, q.device) * decay[:, None, None] for n in (h, w))
    rows = _axis_attention(q, k, v, bias_w, (planned_h, planned_w))  # (B, H, heads, W, d)
    columns = (q.transpose(1, 2), k.transpose(1, 2), rows.permute(0, 3, 1, 2, 4))
    return _axis_attention(*columns, bias_h, (planned_w, planned_h)).permute(0, 3, 1, 2, 4)


def masa_full_export(q: Tensor, k: Tensor, v: Tensor, decay: Tensor, h: Size, w: Size,
                     stride: int) -> Tensor:
    """Attention over the ``(B, heads, L, d)`` sequences of ``h x w`` maps, in blocks of whole
    map rows of queries; each block's bias ``decay_h * (|dy| + |dx|)`` is made from coordinate
    differences."""
    heads = q.shape[1]
    # With a static input size every table here is a function of constants, and onnxruntime
    # would fold each block's (heads, rows * W, L) bias into a constant when the session starts
    # (GBs at 800x1344). A zero computed from the data (False for every value, NaN included)
    # keeps them in the graph.
    unfoldable = (q[0, 0, 0, 0] > math.inf).to(q.dtype)
    dist_h, dist_w = distance(h, q.device) + unfoldable, distance(w, q.device)
    planned_h, planned_w = planned_map(stride)
    out = []
    for a, b in block_bounds(h, planned_h, heads * (planned_h * planned_w)**2):
        dist = (dist_h[a:b, None, :, None] + dist_w[None, :, None, :]).reshape(-1, h * w)
        out.append(softmax_attention(q[:, :, a * w:b * w], k, v, dist * decay[:, None, None]))
    return out[0] if len(out) == 1 else torch.cat(out, dim=2)


def export_rotation(q: Tensor, k: Tensor, angle: Tensor, scale: float) -> Tuple[Tensor, Tensor]:
    """``q`` and ``k`` (``(B, H, W, heads, d)`` maps) rotated with a stage's ``angle`` buffer
    (:class:`.masa.RelPos2d`), ``k`` scaled first as upstream does."""
    sin, cos = rotary_tables(angle, q.shape[1], q.shape[2])
    return rotate_halves(q, sin, cos), rotate_halves(k * scale, sin, cos)
