"""MaSA kernels side by side: one RMT per kernel with the same weights, their steps timed
interleaved in one process, and the tolerances every kernel is held to against ``reference``.

``tools/benchmark.py`` (speed and memory against ``reference``) and ``tools/device_check.py``
(the GPU check) measure through these; the tests hold the kernels to the same tolerances.
Interleaving makes machine load affect every kernel alike, so ratios stay meaningful on a shared
machine where absolute times drift.
"""
import contextlib
import math
import statistics
import time
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Union

import torch
from torch import nn

from .models import RMT
from .models.masa import FAST_KERNELS

#: float32: largest error relative to the reference output's (or gradient's) largest magnitude.
PARITY_TOL = 1e-4
#: Autocast forward, relative to the float32 reference's largest magnitude. bf16 keeps 8
#: mantissa bits (unit roundoff 2^-9 = 2e-3); through a dozen normalised blocks the rounding of
#: every matmul, softmax and norm accumulates to about 3% on a tiny RMT (3.1-3.2% for every
#: kernel, the reference included), so 6% leaves room without hiding a wrong bias (a kernel that
#: drops the decay is off by ~100%). fp16 has 11 mantissa bits (0.3% measured).
AUTOCAST_TOL = {'bfloat16': 0.06, 'float16': 0.015}
#: Autocast gradients, relative L2 error over all parameters.
AUTOCAST_GRAD_TOL = {'bfloat16': 0.1, 'float16': 0.03}


def kernels() -> List[str]:
    return ['reference', *FAST_KERNELS]


def trains_on(impl: str, device: str) -> bool:
    """Whether ``impl`` has a backward on ``device`` (FlexAttention has none on CPU)."""
    return not (impl == 'flex' and device == 'cpu')


def rel_max_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """Largest absolute error relative to the reference's largest magnitude."""
    return ((out.float() - ref.float()).abs().max() / ref.float().abs().max()).item()


def rel_l2_err(outs: Sequence[torch.Tensor], refs: Sequence[torch.Tensor]) -> float:
    """Relative L2 error over the concatenation: gradients that are zero in exact arithmetic
    (e.g. key biases under softmax) are pure rounding noise, meaningless one by one."""
    diff = sum(((o.float() - r.float())**2).sum() for o, r in zip(outs, refs))
    return math.sqrt(diff / sum((r.float()**2).sum() for r in refs))


def _loss(outs: Iterable[torch.Tensor]) -> torch.Tensor:
    """A fixed, non-uniform weighting of every output, so every gradient carries signal."""
    return sum((o.float() * torch.linspace(-1, 1, o.numel(), device=o.device).view_as(o)).sum()
               for o in outs)


def run_model(model, x: torch.Tensor, train: bool, amp: Optional[torch.dtype] = None):
    """Outputs, and (``train``) the parameter and input gradients, of one forward."""
    x = x.detach().clone().requires_grad_(train)
    autocast = (torch.autocast(x.device.type, dtype=amp) if amp is not None
                else contextlib.nullcontext())
    with autocast, torch.set_grad_enabled(train):
        outs = model.eval()(x)  # eval BatchNorm: training and inference runs compare
    if not train:
        return [o.detach() for o in outs], None
    _loss(outs).backward()
    grads = [p.grad.detach().clone() for p in model.parameters() if p.grad is not None] + [x.grad]
    model.zero_grad(set_to_none=True)
    return [o.detach() for o in outs], grads



class Timing(NamedTuple):
    """Medians over the repeats: wall seconds, and this process's CPU seconds (the steadier
    measure with one thread on a shared machine: time spent waiting for a core is not in it)."""
    wall_s: float
    cpu_s: float


def build(arch: Union[str, dict], impl: str, device: str = 'cpu',
          dtype: torch.dtype = torch.float32, with_cp: bool = False) -> RMT:
    """RMT with ``attn_impl=impl``; the same weights for every ``impl``."""
    torch.manual_seed(0)
    model = RMT(arch=arch, attn_impl=impl, drop_path_rate=0.0, with_cp=with_cp)
    return model.to(device=device, dtype=dtype)


def step(model: RMT, x: torch.Tensor, mode: str) -> None:
    """One inference (``'infer'``) or forward + backward (``'train'``), synchronised on CUDA."""
    if mode == 'infer':
        with torch.no_grad():
            model.eval()(x)
    else:
        model.train()
        x = x.detach().requires_grad_()
        sum(o.float().mean() for o in model(x)).backward()
        model.zero_grad(set_to_none=True)
    if x.is_cuda:
        torch.cuda.synchronize()


def time_interleaved(steps: Dict[str, Callable[[], None]], warmup: int,
                     repeats: int) -> Dict[str, Timing]:
    """Run each of ``steps`` ``warmup`` times, then ``repeats`` rounds of one call each in
    turn; the median :class:`Timing` per step (NaN with no repeats)."""
    for _ in range(warmup):
        for fn in steps.values():
            fn()
    samples = {name: [] for name in steps}
    for _ in range(repeats):
        for name, fn in steps.items():
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            samples[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    nan = float('nan')
    return {name: Timing(statistics.median(s[0] for s in runs) if runs else nan,
                         statistics.median(s[1] for s in runs) if runs else nan)
            for name, runs in samples.items()}


def rss_mb(field: str = 'VmHWM') -> float:
    """``VmRSS`` or ``VmHWM`` (the high-water mark; unlike ``ru_maxrss`` not inherited from
    the parent at fork) of this process in MiB (Linux)."""
    with open('/proc/self/status') as f:
        line = next(ln for ln in f if ln.startswith(field + ':'))
    return int(line.split()[1]) / 1024



def forward_flops(model: nn.Module, x: torch.Tensor) -> float:
    """Floating-point operations of one inference of ``model`` on ``x``, two per multiply-add
    (the unit of an accelerator's peak TFLOP/s), counted by :mod:`torch.utils.flop_counter`.
    Give it a ``reference`` model: fused kernels hide their matmuls from the counter."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(x)
    return float(counter.get_total_flops())
