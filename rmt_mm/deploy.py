"""Whole detectors and segmentors to ONNX through mmdeploy (1.3.1), and their check: the
onnxruntime file run through mmdeploy's own wrapper (``build_task_processor(...).
build_backend_model``) against the PyTorch model on the same preprocessed images.

mmdeploy is an optional extra (``pip install 'rmt_mm[deploy]'``), imported only when a function
here needs it. The deploy configs are this repository's (``configs/deploy/``): ONNX at opset 11,
the onnxruntime backend, mmdet's ``ObjectDetection`` task (boxes; with a third ``masks`` output
for Mask R-CNN) or mmseg's ``Segmentation`` task (logits, ``with_argmax=False``).

While mmdeploy traces the model, MaSA runs its export form (:mod:`rmt_mm.models.masa_export`):
it needs no mmdeploy rewriter, and its attention blocks are planned for the traced size.
"""
import copy
import importlib.util
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .errors import ConfigError

#: How to get what this module needs.
INSTALL_HINT = "pip install 'rmt_mm[deploy]'"
#: (codebase, task) pairs the deploy configs may name.
SUPPORTED_TASKS = {'mmdet': 'ObjectDetection', 'mmseg': 'Segmentation'}
#: UperNet's pyramid-pooling scales: mmdeploy writes ``adaptive_avg_pool2d`` as a fixed-stride
#: ``AvgPool``, equal to it only where the stride-32 map divides by each scale.
PPM_STRIDE = 32


def mmdeploy_missing() -> Optional[str]:
    """Why mmdeploy cannot be used here (one line), or None if it can."""
    if importlib.util.find_spec('mmdeploy') is None:
        return f'rmt_mm: exporting whole models needs mmdeploy 1.3.1: {INSTALL_HINT}'
    return None


def require_mmdeploy() -> None:
    problem = mmdeploy_missing()
    if problem:
        raise ConfigError(problem)


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
    from .models import FAMILIES
    if backbone not in {cls.__name__ for cls in FAMILIES.values()}:
        raise ConfigError(f'{config_path}: model.backbone.type is {backbone!r}, not one of this '
                          "package's backbones")
    if scope == 'mmdet':
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
    if 'mmseg' == deploy_cfg.codebase_config.type:
        # Whole-image inference as the export traces it; sliding windows do not export.
        model_cfg.model.setdefault('test_cfg', {})['mode'] = 'whole'
    return deploy_cfg, model_cfg


def task_processor(deploy_cfg, model_cfg):
    require_mmdeploy()
    from mmdeploy.apis.utils import build_task_processor
    return build_task_processor(model_cfg, deploy_cfg, 'cpu')


def build_torch_model(deploy_cfg, model_cfg, checkpoint: Optional[str]) -> torch.nn.Module:
    """The PyTorch model as mmdeploy builds it, weights loaded all-or-nothing."""
    from .checkpoints.model import load_model_checkpoint
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
    h, w = inputs.shape[-2:]
    try:
        with torch.no_grad():
            model.backbone(inputs)
    except RuntimeError as err:
        reason = str(err).strip().splitlines()[0]
        raise ConfigError(f'the model cannot take a {h}x{w} input ({reason})') from err


def pooling_exact(model_cfg, h: int, w: int) -> bool:
    """Whether mmdeploy's fixed-stride rewrite of UperNet's pyramid pooling equals the adaptive
    pooling at an ``h x w`` input (always true without a pyramid-pooling head)."""
    head = model_cfg.model.get('decode_head') or {}
    scales = head.get('pool_scales')
    if not scales:
        return True
    mh, mw = -(-h // PPM_STRIDE), -(-w // PPM_STRIDE)
    return all(mh % s == 0 and mw % s == 0 for s in scales)


def export(deploy_cfg, model_cfg, checkpoint: Optional[str], image: str, work_dir: str,
           save_file: str = 'end2end.onnx') -> str:
    """``mmdeploy.apis.torch2onnx`` of the model on ``image``; returns the file written."""
    require_mmdeploy()
    from mmdeploy.apis import torch2onnx
    torch2onnx(image, work_dir, save_file, deploy_cfg, model_cfg, checkpoint, 'cpu')
    return osp.join(work_dir, save_file)


@dataclass
class Comparison:
    """What :func:`compare` measured on one image."""
    image: str
    size: Tuple[int, int]
    numbers: Dict[str, float] = field(default_factory=dict)
    problems: List[str] = field(default_factory=list)

    def line(self) -> str:
        nums = ', '.join(f'{k} {v:.3g}' if isinstance(v, float) else f'{k} {v}'
                         for k, v in self.numbers.items())
        verdict = 'OK' if not self.problems else 'MISMATCH: ' + '; '.join(self.problems)
        return f'{self.image} ({self.size[0]}x{self.size[1]}): {nums}: {verdict}'


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of ``(N, 4)`` and ``(M, 4)`` x0y0x1y1 boxes."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None] - inter, 1e-12)


def compare_detections(ref, got, score_thr: float, min_iou: float = 0.99,
                       max_mask_diff: float = 0.01) -> Tuple[Dict[str, float], List[str]]:
    """Each PyTorch detection of ``score >= score_thr`` matched to the ONNX one of the same
    label with the largest IoU: its IoU, box and score differences, and for masks the
    fraction of the box's pixels that differ."""
    ref_boxes = ref.bboxes.numpy()
    keep = ref.scores.numpy() >= score_thr
    got_boxes, got_labels = got.bboxes.numpy(), got.labels.numpy()
    numbers = dict(confident=int(keep.sum()), onnx_dets=len(got_boxes), min_iou=1.0,
                   max_box_diff=0.0, max_score_diff=0.0)
    if 'masks' in ref:
        numbers['max_mask_diff'] = 0.0
    problems = []
    for i in np.flatnonzero(keep):
        same = np.flatnonzero(got_labels == int(ref.labels[i]))
        if not len(same):
            problems.append(f'no ONNX detection of label {int(ref.labels[i])}')
            continue
        ious = box_iou(ref_boxes[i:i + 1], got_boxes[same])[0]
        j = same[int(ious.argmax())]
        numbers['min_iou'] = min(numbers['min_iou'], float(ious.max()))
        numbers['max_box_diff'] = max(numbers['max_box_diff'],
                                      float(np.abs(ref_boxes[i] - got_boxes[j]).max()))
        numbers['max_score_diff'] = max(numbers['max_score_diff'],
                                        float(abs(ref.scores[i] - got.scores[j])))
        if 'masks' in ref:
            x0, y0, x1, y1 = np.round(ref_boxes[i]).astype(int).clip(0)
            a = ref.masks[i, y0:y1 + 1, x0:x1 + 1].numpy().astype(bool)
            b = got.masks[j, y0:y1 + 1, x0:x1 + 1].numpy().astype(bool)
            diff = float((a != b).mean()) if a.size else 0.0
            numbers['max_mask_diff'] = max(numbers['max_mask_diff'], diff)
    if numbers['min_iou'] < min_iou:
        problems.append(f'box IoU {numbers["min_iou"]:.4f} < {min_iou}')
    if numbers.get('max_mask_diff', 0.0) > max_mask_diff:
        problems.append(f'{numbers["max_mask_diff"]:.2%} of a mask differs (> '
                        f'{max_mask_diff:.0%})')
    return numbers, problems


def compare(deploy_cfg, model_cfg, torch_model: torch.nn.Module, onnx_file: str,
            images: Sequence[str], score_thr: float = 0.3, logit_tol: float = 1e-4
            ) -> List[Comparison]:
    """Run ``onnx_file`` with onnxruntime through mmdeploy's wrapper and ``torch_model`` on
    each image, both on mmdeploy's preprocessed input (the deploy config's size when static),
    and compare: detections as :func:`compare_detections`; segmentation logits (max abs
    difference, within ``logit_tol`` where the pyramid pooling is exact) and predictions."""
    from mmdeploy.utils import get_input_shape
    processor = task_processor(deploy_cfg, model_cfg)
    backend = processor.build_backend_model(
        [onnx_file], data_preprocessor_updater=processor.update_data_preprocessor)
    results = []
    for image in images:
        data, inputs = processor.create_input(image, get_input_shape(deploy_cfg),
                                              data_preprocessor=torch_model.data_preprocessor)
        inputs = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        h, w = inputs.shape[-2:]
        check_size(torch_model, inputs)
        result = Comparison(image, (int(h), int(w)))
        with torch.no_grad():  # data is preprocessed already: predict, not test_step
            ref, = torch_model(inputs, copy.deepcopy(data['data_samples']), mode='predict')
            got, = backend(inputs, copy.deepcopy(data['data_samples']), mode='predict')
        if deploy_cfg.codebase_config.type == 'mmdet':
            result.numbers, result.problems = compare_detections(
                ref.pred_instances, got.pred_instances, score_thr)
        else:
            with torch.no_grad():
                metas = [s.metainfo for s in data['data_samples']]
                logits = torch_model.encode_decode(inputs, metas)
                onnx_logits = backend.wrapper({backend.input_name: inputs})['output']
            diff = float((logits - onnx_logits).abs().max())
            same = float((ref.pred_sem_seg.data == got.pred_sem_seg.data).float().mean())
            exact = pooling_exact(model_cfg, int(h), int(w))
            result.numbers = dict(max_logit_diff=diff, same_pixels=same,
                                  pooling_exact=str(exact))
            if exact and diff > logit_tol:
                result.problems.append(f'logits {diff:.2e} apart (> {logit_tol:g})')
            if exact and same < 1.0:
                result.problems.append(f'{1 - same:.2%} of the pixels predicted differently')
        results.append(result)
    return results
