"""The PyTorch model as mmdeploy builds it, and its export: ``mmdeploy.apis.torch2onnx`` with
this package's rewriters, quiet unless asked.

While mmdeploy traces the model, MaSA runs its export form (:mod:`rmt_mm.models.masa_export`):
it needs no mmdeploy rewriter; its attention blocks are planned for a static file's size, and
for COCO's test size (800x1344) in a dynamic file.
"""
import contextlib
import io
import logging
import os
import os.path as osp
import re
import sys
import tempfile
import warnings
from typing import Iterator, Optional

import torch

from ..errors import ConfigError
from .configs import is_dynamic
from .rewriters import register_rewriters
from .stack import require_mmdeploy


def task_processor(deploy_cfg, model_cfg):
    """mmdeploy's task processor for the pair, on CPU."""
    require_mmdeploy()
    from mmdeploy.apis.utils import build_task_processor
    return build_task_processor(model_cfg, deploy_cfg, 'cpu')


def build_torch_model(deploy_cfg, model_cfg, checkpoint: Optional[str]) -> torch.nn.Module:
    """The PyTorch model as mmdeploy builds it, weights loaded all-or-nothing."""
    from ..checkpoints.model import load_model_checkpoint
    model = task_processor(deploy_cfg, model_cfg).build_pytorch_model(None)
    if checkpoint:
        load_model_checkpoint(model, checkpoint)
    return model.eval()


def traced_input(deploy_cfg, model_cfg, image: str, model: torch.nn.Module) -> torch.Tensor:
    """The preprocessed tensor mmdeploy traces on for ``image``."""
    from mmdeploy.utils import get_input_shape
    _, inputs = task_processor(deploy_cfg, model_cfg).create_input(
        image, get_input_shape(deploy_cfg), data_preprocessor=model.data_preprocessor)
    return inputs[0] if isinstance(inputs, (list, tuple)) else inputs


def check_size(model: torch.nn.Module, inputs: torch.Tensor) -> None:
    """A :class:`ConfigError` naming the size if the backbone cannot take ``inputs``."""
    from ..export import SizeError, forward_or_size_error
    try:
        forward_or_size_error(model.backbone, inputs)
    except SizeError as err:
        raise ConfigError(str(err)) from err


@contextlib.contextmanager
def quiet(verbose: bool = False) -> Iterator[None]:
    """Without ``verbose``: no Python warnings (the tracer's, by the screenful), no native
    warnings (:func:`native_warnings_dropped`), no log records below ERROR (mmdeploy's and
    mmengine's) and nothing printed to ``sys.stdout`` (mmengine prints each checkpoint it
    loads), so that a deploy prints its result lines."""
    if verbose:
        yield
        return
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            native_warnings_dropped():
        warnings.simplefilter('ignore')
        logging.disable(logging.WARNING)
        forget_enabled_levels()
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)
            forget_enabled_levels()


#: A warning line of torch's C++ code (``[W shape_type_inference.cpp:1974] Warning: ...``, or
#: ``[W1207 20:38:51.123 ...]`` in newer torch) or of onnxruntime's (``... [W:onnxruntime:...``).
NATIVE_WARNING = re.compile(r'^\[W[\d ]|\[W:onnxruntime:')


@contextlib.contextmanager
def native_warnings_dropped() -> Iterator[None]:
    """Native code's warnings kept out of stderr: torch's C++ and onnxruntime write them to file
    descriptor 2 directly (the exporter's shape inference prints one per custom op call),
    past Python's warnings and ``sys.stderr``. Everything else written there in the meantime
    is passed on when the block ends."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught.read().decode(errors='replace').splitlines(True)
                    if not NATIVE_WARNING.search(line)]
            sys.stderr.write(''.join(kept))
            sys.stderr.flush()


def forget_enabled_levels() -> None:
    """Make mmengine's loggers see a changed :func:`logging.disable`: they are not in
    logging's registry, whose level caches ``logging.disable`` clears."""
    try:
        from mmengine.logging import MMLogger
    except ImportError:
        return
    for logger in MMLogger._instance_dict.values():
        logger._cache.clear()


def export(deploy_cfg, model_cfg, checkpoint: Optional[str], image: str, work_dir: str,
           save_file: str = 'end2end.onnx') -> str:
    """``mmdeploy.apis.torch2onnx`` of the model on ``image`` (with
    :func:`~rmt_mm.deploy.rewriters.register_rewriters`); returns the file written."""
    require_mmdeploy()
    register_rewriters()
    from mmdeploy.apis import torch2onnx

    from ..models.masa_export import DEFAULT_PLAN, planned_for
    width_height = deploy_cfg.onnx_config.get('input_shape')
    plan = DEFAULT_PLAN if is_dynamic(deploy_cfg) or not width_height else width_height[::-1]
    with planned_for(plan):
        torch2onnx(image, work_dir, save_file, deploy_cfg, model_cfg, checkpoint, 'cpu')
    return osp.join(work_dir, save_file)
