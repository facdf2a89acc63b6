"""FLOP counting of a model's inference."""
import torch
from torch import nn


def forward_flops(model: nn.Module, x: torch.Tensor) -> float:
    """Floating-point operations of one inference of ``model`` on ``x``, two per multiply-add
    (the unit of an accelerator's peak TFLOP/s), counted by :mod:`torch.utils.flop_counter`.
    Give it a ``reference`` model: fused kernels hide their matmuls from the counter."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(x)
    return float(counter.get_total_flops())
