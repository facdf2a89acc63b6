"""The deploy config and the model config, checked against each other and prepared for
mmdeploy: ONNX, the onnxruntime backend, mmdet's ``ObjectDetection`` (boxes; with a third
``masks`` output for Mask R-CNN) or mmseg's ``Segmentation`` (logits, ``with_argmax=False``).
"""
import copy
import os.path as osp
from typing import Optional, Sequence

from ..errors import ConfigError

#: (codebase, task) pairs the deploy configs may name.
SUPPORTED_TASKS = {'mmdet': 'ObjectDetection', 'mmseg': 'Segmentation'}
#: mmdet detectors that mmdeploy 1.3.1's ObjectDetection task cannot export: it traces them to
#: per-query logits and reads those as boxes.
MASK_CLASSIFIERS = ('MaskFormer', 'Mask2Former')
#: Test-pipeline steps that read or check annotations, dropped for export and --verify.
ANNOTATION_TRANSFORMS = ('LoadAnnotations', 'CheckSegLabels')


def load_deploy_config(path: str):
    """Read and check a deploy config: ONNX, the onnxruntime backend and a supported task."""
    from mmengine.config import Config
    if not osp.isfile(path):
        raise ConfigError(f'deploy config not found: {path}')
    try:
        cfg = Config.fromfile(path)
    except Exception as err:
        raise ConfigError(f'{path}: cannot read the deploy config ({type(err).__name__}: '
                          f'{str(err).strip().splitlines()[0] if str(err).strip() else ""})'
                          ) from err
    onnx_cfg = cfg.get('onnx_config') or {}
    backend = (cfg.get('backend_config') or {}).get('type')
    codebase = cfg.get('codebase_config') or {}
    if onnx_cfg.get('type') != 'onnx':
        raise ConfigError(f'{path}: onnx_config.type is {onnx_cfg.get("type")!r}; only ONNX '
                          'export is supported')
    if backend != 'onnxruntime':
        raise ConfigError(f'{path}: backend_config.type is {backend!r}; only onnxruntime is '
                          'supported')
    if SUPPORTED_TASKS.get(codebase.get('type')) != codebase.get('task'):
        raise ConfigError(f'{path}: codebase {codebase.get("type")!r} task '
                          f'{codebase.get("task")!r} is not supported; supported: '
                          + ', '.join(f'{c} {t}' for c, t in SUPPORTED_TASKS.items()))
    return cfg


def is_dynamic(deploy_cfg) -> bool:
    return bool(deploy_cfg.onnx_config.get('dynamic_axes'))


def has_masks(model_cfg) -> bool:
    roi_head = model_cfg.model.get('roi_head') or {}
    return bool(roi_head.get('mask_head'))


def check_pair(deploy_cfg, model_cfg, scope: str, deploy_path: str, config_path: str) -> None:
    """One :class:`ConfigError` where the deploy config does not fit the model config."""
    codebase = deploy_cfg.codebase_config.type
    if codebase != scope:
        raise ConfigError(f'{deploy_path}: a {codebase} deploy config; {config_path} is a '
                          f'{scope} config')
    backbone = model_cfg.model.get('backbone', {}).get('type')
    from ..models import FAMILIES
    if backbone not in {cls.__name__ for cls in FAMILIES.values()}:
        raise ConfigError(f'{config_path}: model.backbone.type is {backbone!r}, not one of this '
                          "package's backbones")
    if scope == 'mmdet':
        if model_cfg.model.get('type') in MASK_CLASSIFIERS:
            raise ConfigError(f'{config_path}: mmdeploy 1.3.1 exports mmdet\'s '
                              f'{model_cfg.model.type} only as raw class and mask logits (its '
                              'PanopticSegmentation task), without the instance '
                              'post-processing that gives boxes, labels and masks; mmseg\'s '
                              'Mask2Former (semantic) exports')
        outputs = list(deploy_cfg.onnx_config.output_names)
        if has_masks(model_cfg) != ('masks' in outputs):
            want = 'instance-seg' if has_masks(model_cfg) else 'detection'
            raise ConfigError(f'{deploy_path}: outputs {outputs} do not fit {config_path} '
                              f'({"with" if has_masks(model_cfg) else "without"} a mask head): '
                              f'use a configs/deploy/{want}_onnxruntime_*.py config')
        if has_masks(model_cfg) and deploy_cfg.codebase_config.get(
                'post_processing', {}).get('export_postprocess_mask', True):
            raise ConfigError(f'{deploy_path}: set codebase_config.post_processing.'
                              'export_postprocess_mask=False (mmdeploy pastes the masks)')
    else:
        model_type = model_cfg.model.get('type')
        if model_type != 'EncoderDecoder':
            raise ConfigError(f'{config_path}: model type {model_type!r}; the segmentation '
                              'export supports EncoderDecoder')
        if model_cfg.model.get('test_cfg', {}).get('mode', 'whole') != 'whole':
            raise ConfigError(f'{config_path}: model.test_cfg.mode is '
                              f'{model_cfg.model.test_cfg.mode!r}; the export runs whole-image '
                              "inference: --cfg-options model.test_cfg.mode=whole")


def prepare_configs(deploy_cfg, model_cfg, shape: Optional[Sequence[int]], deploy_path: str):
    """Copies ready for mmdeploy: the static size (``shape`` is ``(H, W)``; mmdeploy's
    ``input_shape`` is ``[W, H]``) and a model config that builds without its pretrained
    weights (the checkpoint holds them all)."""
    deploy_cfg, model_cfg = copy.deepcopy(deploy_cfg), copy.deepcopy(model_cfg)
    if shape is not None:
        if len(shape) != 2 or min(shape) < 1:
            raise ConfigError(f'--shape: the input size must be two positive integers (H W), '
                              f'got {list(shape)}')
        deploy_cfg.onnx_config.input_shape = [int(shape[1]), int(shape[0])]
    elif not is_dynamic(deploy_cfg) and not deploy_cfg.onnx_config.get('input_shape'):
        raise ConfigError(f'{deploy_path}: a static deploy config needs the input size: '
                          '--shape H W')
    backbone = model_cfg.model.get('backbone')
    if backbone is not None:
        backbone['init_cfg'] = None
    model_cfg.model.pop('pretrained', None)
    if model_cfg.get('test_pipeline'):  # no annotations come with the images
        model_cfg.test_pipeline = [t for t in model_cfg.test_pipeline
                                   if t.get('type') not in ANNOTATION_TRANSFORMS]
    if 'mmseg' == deploy_cfg.codebase_config.type:
        # Whole-image inference as the export traces it; sliding windows do not export.
        model_cfg.model.setdefault('test_cfg', {})['mode'] = 'whole'
    return deploy_cfg, model_cfg
