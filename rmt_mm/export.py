"""ONNX export of a backbone, and its check with onnxruntime.

Every ``attn_impl`` exports: while the model is traced, MaSA runs as ``reference``'s plain
tensor operations and the CPU speed measures are off (:func:`rmt_mm.models.masa.exporting`),
so the file computes the upstream function with standard ONNX operators. The input size is
fixed at export time (the relative-position tables depend on it).
"""
from typing import Dict, List, Sequence

import numpy as np
import torch

from .models import DenseBackbone

EXPORTERS = ('dynamo', 'torchscript')


def output_names(model: DenseBackbone) -> List[str]:
    return [f'stage{i + 1}' for i in model.out_indices]


def export_onnx(model: DenseBackbone, shape: Sequence[int], path: str,
                exporter: str = 'dynamo', opset: int = 18) -> None:
    """Write ``model`` (eval mode, one ``1 x 3 x H x W`` image) to ``path`` with torch's
    ``dynamo`` or legacy ``torchscript`` ONNX exporter."""
    if exporter not in EXPORTERS:
        raise ValueError(f'exporter must be one of {EXPORTERS}, got {exporter!r}')
    x = torch.zeros(1, 3, *shape)
    with torch.no_grad():
        torch.onnx.export(model.eval(), (x, ), path, dynamo=exporter == 'dynamo',
                          input_names=['image'], output_names=output_names(model),
                          opset_version=opset)


def verify_onnx(model: DenseBackbone, path: str, shape: Sequence[int],
                seed: int = 0) -> Dict[str, float]:
    """Max abs difference per output between onnxruntime on ``path`` and ``model`` in
    PyTorch, on one random image."""
    import onnxruntime

    x = torch.randn(1, 3, *shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = model.eval()(x)
    session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
    got = session.run(None, {'image': x.numpy()})
    return {name: float(np.abs(out - ref.numpy()).max())
            for name, out, ref in zip(output_names(model), got, expected)}
