"""Whole detectors and segmentors to ONNX through mmdeploy (1.3.1), the mmdeploy SDK's model
folder beside the file, and the check of the file against the PyTorch model.

One job per module: :mod:`.stack` (whether mmdeploy can run here), :mod:`.configs` (the
deploy and model configs checked and prepared), :mod:`.rewriters` (what the export replaces
in mmdet and mmseg), :mod:`.export` (the model built and exported), :mod:`.sdk` (the SDK's
model folder), :mod:`.verify` (onnxruntime against PyTorch). mmdeploy is an optional extra,
imported only when a function needs it.
"""
from .configs import check_pair, is_dynamic, load_deploy_config, prepare_configs
from .export import build_torch_model, check_size, export, quiet, traced_input
from .rewriters import register_rewriters
from .stack import mmdeploy_missing, require_mmdeploy
from .verify import compare

__all__ = ['build_torch_model', 'check_pair', 'check_size', 'compare', 'export', 'is_dynamic',
           'load_deploy_config', 'mmdeploy_missing', 'prepare_configs', 'quiet',
           'register_rewriters', 'require_mmdeploy', 'traced_input']
