"""ONNX export of a backbone at any input size, and its check with onnxruntime.

While the model is traced, MaSA runs its export form (:mod:`rmt_mm.models.masa_export`): the
upstream function in standard ONNX operators, its position tables computed in the graph from
the input's shape and its attention in query blocks; the CPU speed measures are off. By default
the file takes any batch size, height and width (``dynamic=True``); the traced size only sets
how many blocks each attention is split into (:data:`~rmt_mm.models.masa_export.
EXPORT_BLOCK_ELEMS`).

Two exporters: ``torchscript`` (``torch.onnx.export``'s tracer, any opset from 11, the one
mmdeploy uses) and ``dynamo`` (``torch.export``-based, opset 18 and later, torch >= 2.5 with
``onnxscript`` installed).
"""
import importlib.util
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .compat import ONNX_DYNAMO_EXPORTER
from .models import DenseBackbone
from .models.masa_export import planned_for

EXPORTERS = ('dynamo', 'torchscript')
#: Lowest opset each exporter writes (the dynamo exporter's operator library starts at 18),
#: and its default: for TorchScript that is mmdeploy's (and the stock mmdet deploy configs').
MIN_OPSET = {'dynamo': 18, 'torchscript': 11}
DEFAULT_OPSET = MIN_OPSET
INPUT_NAME = 'image'


def dynamo_exporter_missing() -> Optional[str]:
    """Why ``exporter='dynamo'`` cannot run here, or None if it can."""
    if not ONNX_DYNAMO_EXPORTER:
        return (f'the dynamo exporter needs torch >= 2.5 (torch.onnx.export(dynamo=True)); '
                f'this is torch {torch.__version__}: use the torchscript exporter')
    if importlib.util.find_spec('onnxscript') is None:
        return 'the dynamo exporter needs onnxscript: pip install onnxscript'
    return None


def default_exporter() -> str:
    """``dynamo`` where it runs, else ``torchscript``."""
    return 'torchscript' if dynamo_exporter_missing() else 'dynamo'


def check_export_args(exporter: str, opset: int, shape: Sequence[int]) -> None:
    """One clear :class:`ValueError` for an exporter, opset or size that cannot work."""
    if exporter not in EXPORTERS:
        raise ValueError(f'exporter must be one of {EXPORTERS}, got {exporter!r}')
    if exporter == 'dynamo' and dynamo_exporter_missing():
        raise ValueError(dynamo_exporter_missing())
    if opset < MIN_OPSET[exporter]:
        raise ValueError(f'opset {opset}: the {exporter} exporter writes opset '
                         f'{MIN_OPSET[exporter]} or later'
                         + (' (use the torchscript exporter for older opsets)'
                            if exporter == 'dynamo' else ''))
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f'the input size must be two positive integers (H W), got '
                         f'{list(shape)}')


def output_names(model: DenseBackbone) -> List[str]:
    return [f'stage{i + 1}' for i in model.out_indices]


class SizeError(ValueError):
    """An input size the model cannot take."""


def forward_or_size_error(model: DenseBackbone, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """The model's outputs, or a :class:`SizeError` saying that it cannot take this size
    (e.g. a spatial-reduction conv larger than its map)."""
    try:
        with torch.no_grad():
            return model(x)
    except RuntimeError as err:
        reason = str(err).strip().splitlines()[0]
        raise SizeError(f'{model.describe()} cannot take a {x.shape[2]}x{x.shape[3]} input '
                         f'({reason})') from err


def export_onnx(model: DenseBackbone, shape: Sequence[int], path: str,
                exporter: str = 'dynamo', opset: Optional[int] = None,
                dynamic: bool = True) -> None:
    """Write ``model`` (eval mode) to ``path``, traced on a ``1 x 3 x H x W`` image of
    ``shape``, its attention blocks planned for that size; with ``dynamic`` the file takes any
    ``N x 3 x H x W``, else only that size."""
    opset = DEFAULT_OPSET.get(exporter, 0) if opset is None else opset
    check_export_args(exporter, opset, shape)
    x = torch.zeros(1, 3, *shape)
    forward_or_size_error(model.eval(), x)
    names = output_names(model)
    kwargs = dict(input_names=[INPUT_NAME], output_names=names, opset_version=opset)
    if exporter == 'dynamo':
        kwargs['dynamo'] = True
        if dynamic:
            dim = torch.export.Dim.DYNAMIC
            kwargs['dynamic_shapes'] = ({0: dim, 2: dim, 3: dim}, )
    else:
        if ONNX_DYNAMO_EXPORTER:
            kwargs['dynamo'] = False
        if dynamic:
            kwargs['dynamic_axes'] = {
                name: {0: 'batch', 2: f'{name}_height', 3: f'{name}_width'}
                for name in [INPUT_NAME] + names}
    with torch.no_grad(), planned_for(shape):
        torch.onnx.export(model, (x, ), path, **kwargs)


def onnx_session(path: str, threads: Optional[int] = None):
    """An onnxruntime CPU session on ``path`` with the default (all) graph optimizations and
    ``threads`` intra-op threads (default: onnxruntime's, one per physical core)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(path, options, providers=['CPUExecutionProvider'])


def verify_onnx(model: DenseBackbone, path: str, shapes: Sequence[Sequence[int]],
                seed: int = 0) -> Dict[Tuple[int, int], Dict[str, float]]:
    """Max abs difference per output between onnxruntime on ``path`` and ``model`` in
    PyTorch, on one random image of each size in ``shapes``."""
    session = onnx_session(path)
    static = [d if isinstance(d, int) else None for d in session.get_inputs()[0].shape[2:]]
    errors = {}
    for shape in shapes:
        shape = tuple(shape)
        if None not in static and list(shape) != static:
            raise SizeError(f'{path} takes {static[0]}x{static[1]} images only (exported '
                             f'without dynamic axes), not {shape[0]}x{shape[1]}')
        x = torch.randn(1, 3, *shape, generator=torch.Generator().manual_seed(seed))
        expected = forward_or_size_error(model.eval(), x)
        got = session.run(None, {INPUT_NAME: x.numpy()})
        errors[shape] = {name: float(np.abs(out - ref.numpy()).max())
                         for name, out, ref in zip(output_names(model), got, expected)}
    return errors
