"""What differs between the supported torch releases (2.1 to the newest), in one place.

Each gate is named for what it enables, and the rest of the package asks only these, never
``torch.__version__`` itself.
"""
from typing import Callable, Optional

import torch

#: torch's weights-only unpickler takes extra globals for the duration of a read
#: (``torch.serialization.safe_globals`` with ``(object, qualified name)`` pairs, 2.6). Older
#: releases read checkpoints through :class:`rmt_mm.checkpoints.reading.RestrictedUnpickler`.
EXTENDABLE_WEIGHTS_ONLY: bool = torch.__version__ >= (2, 6)

#: ``torch.onnx.export(..., dynamo=True)``: the torch.export-based ONNX exporter (2.5).
ONNX_DYNAMO_EXPORTER: bool = torch.__version__ >= (2, 5)


def autocast_dtype(device_type: str) -> Optional[torch.dtype]:
    """The dtype autocast runs ops in on ``device_type`` (``'cpu'``, ``'cuda'``), or ``None``
    where autocast is off. (torch < 2.4 has per-device functions instead of one taking the
    device.)"""
    if hasattr(torch, 'get_autocast_dtype'):
        return (torch.get_autocast_dtype(device_type)
                if torch.is_autocast_enabled(device_type) else None)
    if device_type == 'cpu':
        return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else None
    return torch.get_autocast_gpu_dtype() if torch.is_autocast_enabled() else None


def is_exporting() -> bool:
    """Whether a model is being traced for export: TorchScript/ONNX tracing, ``torch.export``
    or the dynamo ONNX exporter (``torch.compiler.is_exporting``, 2.3)."""
    compiler_exporting = getattr(getattr(torch, 'compiler', None), 'is_exporting', None)
    return (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
            or bool(compiler_exporting and compiler_exporting()))


def flex_attention() -> Callable:
    """``torch.nn.attention.flex_attention.flex_attention`` (2.5), or one line saying what to
    use instead."""
    try:
        from torch.nn.attention.flex_attention import flex_attention as fn
    except ImportError:
        raise RuntimeError(
            f"attn_impl='flex' needs FlexAttention (torch >= 2.5); torch {torch.__version__} "
            "lacks it: use attn_impl='sdpa' or 'blocked'") from None
    return fn
