"""What every MaSA kernel is held to against ``reference``: the tolerances (float32 and
autocast), the error measures, and one forward (and backward) of a model to compare.

The tests, ``tools/device_check.py`` and the benchmarks share these, so a kernel passes or
fails by the same numbers wherever it is checked.
"""
import contextlib
import math
from typing import Iterable, List, Optional, Sequence

import torch

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
