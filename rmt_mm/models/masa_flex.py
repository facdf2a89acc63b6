"""The ``flex`` MaSA kernels: FlexAttention with the Manhattan decay computed in ``score_mod``.

:func:`torch.nn.attention.flex_attention` fuses ``softmax(q k^T + score_mod) v`` into one
generated kernel (forward and, on CUDA, backward). MaSA's decay is a function of the two token
indices, so ``score_mod`` computes it from them: ``decay_h * |i - j|`` along a line (axial), and
``decay_h * (|dy| + |dx|)`` with the rows and columns recovered from the raster indices on the
``h x w`` grid (full). No bias tensor exists, in forward or backward.

**One compiled kernel family for every input size.** Each form (full, decomposed) is compiled
with dynamic shapes, whole (layout changes and FlexAttention calls in one graph), once per
*signature*: the number of heads and the head dimension (FlexAttention specialises on both),
dtype, device and whether autograd records. Batch, map height and width, hence the sequence
lengths, reach ``score_mod`` as symbolic sizes, never as constants, so a new input size or
aspect ratio runs a kernel already compiled; what still compiles anew is a size of 1 (dynamo
specialises it) and, on some CPUs, keys padded or not (below). Each signature compiles its own
copy of the function's code, because dynamo keeps its cache and ``recompile_limit`` per code
object: one model's signatures never crowd each other out. :func:`compilations` counts the
graphs.

**Never unfused.** Outside a compiled graph FlexAttention runs an unfused implementation that
materialises the ``L x L`` scores. Should a compiled function run eagerly anyway (dynamo's
``recompile_limit`` reached, dynamo disabled, a ``force_eager`` stance), the kernels notice it
(:func:`torch.compiler.is_compiling` is false inside it) and call ``fallback`` (``masa.py``
passes the ``sdpa`` kernel) with one :class:`FlexFallbackWarning` per process; without a
``fallback`` they raise.

**CPU.** Inference only: torch generates no FlexAttention backward for CPU, so training there
raises an error. torch's CPU template computes ``q k^T`` with a micro-GEMM over blocks of
:data:`CPU_GEMM_BLOCK_N` keys whose last, partial block is computed as a whole block when its
length is a multiple of the float vector width and that width is below 16 (AVX2, NEON): it
reads keys past the sequence and writes scores past its buffer, over the softmax's running
maxima, so outputs come out wrong or NaN (docs/kernels.md). On such hosts the keys and values
are padded to a multiple of :data:`CPU_GEMM_BLOCK_N`, and the padding is masked inside the
``q k^T`` product (:func:`_pad_keys`), not by ``score_mod``: a ``score_mod`` that compares
``kv_idx`` with the symbolic sequence length makes torch 2.13's CPU template write C++ that does
not compile (``'cur_kvSplitSize5' was not declared``; it renames its block-size arguments by
text replacement, which also hits a size argument whose name starts the same).

Tensors use the map-shaped, head-split layout ``(B, H, W, heads, head_dims)``; ``q`` comes
rotated and multiplied by the attention scale. FlexAttention exists from torch 2.5 and is
imported on first use.
"""
import types
import warnings
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..compat import flex_attention
from .masa_blocked import requires_grad

#: Keys per column block of the ``q k^T`` micro-GEMM in torch's CPU FlexAttention template.
CPU_GEMM_BLOCK_N = 16

Fallback = Callable[[], Tensor]
#: ``bias(h, q_idx, kv_idx)``: MaSA's decay term for ``score_mod``.
Bias = Callable[[Tensor, Tensor, Tensor], Tensor]


class FlexFallbackWarning(UserWarning):
    """FlexAttention could not run compiled, so another kernel computed the attention."""


class _CountingInductor:
    """Inductor as a ``torch.compile`` backend, counting the graphs it is given."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, graph: torch.fx.GraphModule, example_inputs: List[Tensor]):
        from torch._inductor.compile_fx import compile_fx
        self.graphs += 1
        return compile_fx(graph, example_inputs)


class _Compiled(NamedTuple):
    fn: Callable
    backend: _CountingInductor


_FLEX: Dict[str, Callable] = {}
_COMPILED: Dict[tuple, _Compiled] = {}
_WARNED: List[str] = []


# ----------------------------------------------------------------------------- compiled code


def _flex(q: Tensor, k: Tensor, v: Tensor, bias: Bias) -> Tensor:
    """``softmax(q k^T + bias) v`` on ``(batch, heads, L, d)`` tensors (keys and values padded
    as the module docstring says)."""
    return _FLEX['fn'](q, k, v, score_mod=lambda score, b, h, i, j: score + bias(h, i, j),
                       scale=1.0)


def _line(q: Tensor, k: Tensor, v: Tensor, decay: Tensor) -> Optional[Tensor]:
    """Attention along lines with the bias ``decay_h * |i - j|`` (exactly symmetric ALiBi).
    ``None`` when not running compiled."""
    if not torch.compiler.is_compiling():
        return None
    return _flex(q, k, v, lambda h, i, j: decay[h] * (i - j).abs())


def _grid(q: Tensor, k: Tensor, v: Tensor, decay: Tensor, width: int) -> Optional[Tensor]:
    """Attention between the raster-ordered tokens of maps ``width`` tokens wide, with the bias
    ``decay_h * (|dy| + |dx|)``. ``None`` when not running compiled."""
    if not torch.compiler.is_compiling():
        return None
    return _flex(q, k, v, lambda h, i, j: decay[h] * (
        (i // width - j // width).abs() + (i % width - j % width).abs()))


# ----------------------------------------------------------------------------- compilation


def _import_flex() -> None:
    """FlexAttention, and dynamo's promise that :func:`_cpu_vector_floats` is a constant, on
    first use: both import dynamo, which would add a second to importing the models."""
    if 'fn' not in _FLEX:
        _FLEX['fn'] = flex_attention()
        torch.compiler.assume_constant_result(_cpu_vector_floats)


def compiled(fn: Callable, q: Tensor, grad: bool) -> Callable:
    """``fn`` compiled with dynamic shapes for ``q``'s signature, on a copy of its code object
    of its own (one dynamo cache and recompile limit per signature). The kernels' entry points
    have imported FlexAttention (:func:`_import_flex`)."""
    key = (fn.__name__, q.shape[1], q.shape[-1], q.dtype, q.device.type, grad)
    if key not in _COMPILED:
        own = types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__)
        backend = _CountingInductor()
        _COMPILED[key] = _Compiled(torch.compile(own, backend=backend, dynamic=True), backend)
    return _COMPILED[key].fn


def compilations() -> Dict[str, int]:
    """Graphs compiled so far in this process, per signature, e.g.
    ``'_line heads=4 head_dims=16 torch.float32 cpu'`` (``grad`` appended when autograd
    records)."""
    return {' '.join([name, f'heads={heads}', f'head_dims={dims}', str(dtype), device]
                     + ['grad'] * grad): entry.backend.graphs
            for (name, heads, dims, dtype, device, grad), entry in _COMPILED.items()}


def _cpu_vector_floats() -> int:
    """Floats per vector register in inductor's CPU code (0: no vector ISA); a constant to
    dynamo once :func:`_import_flex` has run."""
    from torch._inductor.cpu_vec_isa import pick_vec_isa
    isa = pick_vec_isa()
    return isa.nelements(torch.float) if isa else 0


def cpu_keys_need_padding(device: torch.device) -> bool:
    """Whether torch's CPU micro-GEMM can overrun on ``device``: a CPU whose vectors, as
    inductor picks them, hold fewer than :data:`CPU_GEMM_BLOCK_N` floats."""
    return device.type == 'cpu' and 0 < _cpu_vector_floats() < CPU_GEMM_BLOCK_N


# ----------------------------------------------------------------------------- the kernels


def _check_cpu(*tensors: Tensor) -> None:
    if tensors[0].device.type != 'cpu':
        return
    if not _cpu_vector_floats():
        raise RuntimeError(
            "attn_impl='flex' on CPU needs AVX2 or AVX-512 code from inductor (torch's CPU "
            'FlexAttention template does not build without vectors, e.g. under '
            "ATEN_CPU_CAPABILITY=default); use attn_impl='blocked'")
    if requires_grad(*tensors):
        raise RuntimeError(
            "attn_impl='flex' cannot train on CPU: torch has no FlexAttention backward for CPU "
            "(inference works); use attn_impl='blocked' or 'sdpa' to train on CPU")


def _pad_keys(q: Tensor, k: Tensor, v: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Keys and values padded to a multiple of :data:`CPU_GEMM_BLOCK_N`, on token-major
    ``(batch, L, heads, d)`` tensors. The padding is masked through the product itself: ``q``
    and ``k`` get one more dimension, 1 in every query, 0 in the keys and the dtype's lowest
    value in the padding, whose scores are thus far below any key's and vanish in the softmax
    (no size reaches ``score_mod``)."""
    pad = (0, 0, 0, 0, 0, -k.shape[1] % CPU_GEMM_BLOCK_N)
    mask = F.pad(torch.zeros_like(k[..., :1]), pad, value=torch.finfo(k.dtype).min)
    k = torch.cat([F.pad(k, pad), mask], -1)
    q = torch.cat([q, torch.ones_like(q[..., :1])], -1)
    return q, k, F.pad(v, pad)


def _run_compiled(fn: Callable, q: Tensor, k: Tensor, v: Tensor, *args) -> Optional[Tensor]:
    """``fn`` compiled, on token-major ``(batch, L, heads, d)`` tensors; the same layout out.

    Every call hands FlexAttention ``(batch, heads, L, d)`` views of token-major memory (the map
    layout's own order), so rows, columns and full attention share one stride pattern. In
    inference they go in detached, an alias that is no view: dynamo would also guard on the
    sizes of a view's base. Equal sizes do not share a symbol ("duck sizing"), else a first
    square map or a map side equal to the heads would tie those sizes together, or to a
    constant, and cost a recompilation at the next size. Inside the caller's own
    ``torch.compile``, ``fn`` is simply traced into the caller's graph."""
    if k.shape[1] % CPU_GEMM_BLOCK_N and cpu_keys_need_padding(k.device):
        q, k, v = _pad_keys(q, k, v)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    if torch.compiler.is_compiling():
        out = fn(q, k, v, *args)
    else:
        from torch.fx.experimental import _config as fx_config  # torch >= 2.2, as flex needs
        grad = requires_grad(q, k, v)
        if not grad:
            q, k, v = (t.detach() for t in (q, k, v))
        with fx_config.patch(use_duck_shape=False):
            out = compiled(fn, q, grad)(q, k, v, *args)
    return None if out is None else out.transpose(1, 2)


def _fall_back(fallback: Optional[Fallback]) -> Tensor:
    cause = ("attn_impl='flex': FlexAttention would run uncompiled (dynamo's recompile_limit "
             'reached, dynamo disabled or a force_eager stance), which materialises the L x L '
             'scores')
    if fallback is None:
        raise RuntimeError(cause)
    if not _WARNED:
        _WARNED.append(cause)
        warnings.warn(f"{cause}; such calls run attn_impl='sdpa' instead", FlexFallbackWarning,
                      stacklevel=4)
    return fallback()


def masa_full_flex(q: Tensor, k: Tensor, v: Tensor, decay: Tensor, width: int,
                   fallback: Optional[Fallback] = None) -> Tensor:
    """Full attention on the ``(B, heads, L, d)`` sequences of maps ``width`` tokens wide;
    ``fallback()`` computes the same if FlexAttention cannot run compiled."""
    _import_flex()
    _check_cpu(q, k, v)
    out = _run_compiled(_grid, *(t.transpose(1, 2) for t in (q, k, v)), decay, width)
    return _fall_back(fallback) if out is None else out.transpose(1, 2)


def masa_decomposed_flex(q: Tensor, k: Tensor, v: Tensor, decay: Tensor,
                         fallback: Optional[Fallback] = None) -> Tensor:
    """Axial attention: within each row (W axis), then within each column (H axis), the rows'
    output as the columns' values; ``fallback()`` computes the same if FlexAttention cannot
    run compiled."""
    _import_flex()
    _check_cpu(q, k, v)
    b, h, w, n, d = q.shape

    def columns(t: Tensor) -> Tensor:  # (B * W, H, heads, d), a copy even when B is 1
        return t.transpose(1, 2).contiguous().view(b * w, h, n, d)

    rows = _run_compiled(_line, *(t.reshape(b * h, w, n, d) for t in (q, k, v)), decay)
    if rows is None:
        return _fall_back(fallback)
    out = _run_compiled(_line, columns(q), columns(k), columns(rows.reshape(b, h, w, n, d)), decay)
    return _fall_back(fallback) if out is None else out.reshape(b, w, h, n, d).transpose(1, 2)
