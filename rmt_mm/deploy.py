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
#: Test-pipeline steps that read or check annotations, dropped for export and --verify.
ANNOTATION_TRANSFORMS = ('LoadAnnotations', 'CheckSegLabels')


def mmdeploy_missing() -> Optional[str]:
    """Why mmdeploy cannot be used here (one line), or None if it can."""
    try:
        import mmdeploy  # noqa: F401
    except ImportError as err:
        return (f'rmt_mm: exporting whole models needs mmdeploy 1.3.1 ({err}): '
                f'{INSTALL_HINT}')
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
    if model_cfg.get('test_pipeline'):  # no annotations come with the images
        model_cfg.test_pipeline = [t for t in model_cfg.test_pipeline
                                   if t.get('type') not in ANNOTATION_TRANSFORMS]
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
    from .export import SizeError, forward_or_size_error
    try:
        forward_or_size_error(model.backbone, inputs)
    except SizeError as err:
        raise ConfigError(str(err)) from err


_registered = False


def adaptive_avg_pool2d_bins(x: torch.Tensor, oh: int, ow: int) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, (oh, ow))`` in ONNX operators at any input size: PyTorch's
    bins (``floor(i * n / o)`` to ``ceil((i + 1) * n / o)``) as slices whose bounds come from
    the runtime shape, averaged over the rows, then over the columns (equal row counts per
    column bin, so the mean of means is the bin's mean)."""
    h, w = x.shape[2], x.shape[3]

    def pool(t: torch.Tensor, n, out: int, dim: int) -> torch.Tensor:
        parts = []
        for i in range(out):
            start, end = (i * n) // out, ((i + 1) * n + out - 1) // out
            parts.append(t.narrow(dim, start, end - start).mean(dim, keepdim=True))
        return torch.cat(parts, dim)

    return pool(pool(x, h, oh, 2), w, ow, 3)


def register_rewriters() -> None:
    """Two rewriters (mmdeploy's ``FUNCTION_REWRITER``, onnxruntime backend) that keep the
    segmentation heads' sizes in the graph, so that a dynamic file is right at every size and
    not only at the traced one (stock mmdeploy 1.3.1 freezes both sizes as constants, also with
    mmseg's own backbones):

    - ``mmseg.models.utils.Upsample`` (Semantic FPN's scale heads) computes its output size as
      Python ints (``int(t * scale_factor)``): here it interpolates by ``scale_factor``, the
      same size (floor) and sampling, written as a Resize by scales.
    - ``F.adaptive_avg_pool2d`` (UperNet's pyramid pooling): mmdeploy's default rewrite pools
      with a fixed kernel and stride computed from the traced size, exact only where the map
      divides by the output size, and only at the traced size. Here
      :func:`adaptive_avg_pool2d_bins` computes PyTorch's adaptive bins from the runtime
      shape: exact at every size.

    Registered once, when an export or a check first needs them.
    """
    global _registered
    if _registered:
        return
    import torch.nn.functional as F
    from mmdeploy.core import FUNCTION_REWRITER
    from torch.nn.modules.utils import _pair

    @FUNCTION_REWRITER.register_rewriter(
        func_name='mmseg.models.utils.wrappers.Upsample.forward', backend='onnxruntime')
    def upsample__forward(self, x):
        ctx = FUNCTION_REWRITER.get_context()
        if self.size or not self.scale_factor:
            return ctx.origin_func(self, x)
        return F.interpolate(x, scale_factor=self.scale_factor, mode=self.mode,
                             align_corners=self.align_corners)

    @FUNCTION_REWRITER.register_rewriter(
        func_name='torch.nn.functional.adaptive_avg_pool2d', backend='onnxruntime')
    def adaptive_avg_pool2d__bins(input, output_size):
        ctx = FUNCTION_REWRITER.get_context()
        oh, ow = (int(v) for v in _pair(output_size))
        if oh == ow == 1:
            return ctx.origin_func(input, output_size)
        return adaptive_avg_pool2d_bins(input, oh, ow)

    _registered = True


def export(deploy_cfg, model_cfg, checkpoint: Optional[str], image: str, work_dir: str,
           save_file: str = 'end2end.onnx') -> str:
    """``mmdeploy.apis.torch2onnx`` of the model on ``image`` (with
    :func:`register_rewriters`); returns the file written."""
    require_mmdeploy()
    register_rewriters()
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
    label with the largest IoU. Returned: how many were confident and how many had a twin of
    IoU ``>= min_iou``; over the twins, the smallest IoU, the largest box coordinate and score
    differences and, with masks, the largest share of differing pixels within the box; and a
    problem for each confident detection without a twin or mask too far apart."""
    ref_boxes = ref.bboxes.numpy()
    keep = ref.scores.numpy() >= score_thr
    got_boxes, got_labels = got.bboxes.numpy(), got.labels.numpy()
    numbers = dict(confident=int(keep.sum()), matched=0, onnx_dets=len(got_boxes),
                   min_iou=1.0, max_box_diff=0.0, max_score_diff=0.0)
    if 'masks' in ref:
        numbers['max_mask_diff'] = 0.0
    problems = []
    for i in np.flatnonzero(keep):
        same = np.flatnonzero(got_labels == int(ref.labels[i]))
        ious = box_iou(ref_boxes[i:i + 1], got_boxes[same])[0] if len(same) else np.zeros(0)
        if not len(same) or ious.max() < min_iou:
            best = f'{ious.max():.3f}' if len(same) else 'none'
            problems.append(f'detection {i} (label {int(ref.labels[i])}, score '
                            f'{float(ref.scores[i]):.3f}): best ONNX IoU {best}')
            continue
        j = same[int(ious.argmax())]
        numbers['matched'] += 1
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
            if diff > max_mask_diff:
                problems.append(f'detection {i}: {diff:.2%} of its mask differs (> '
                                f'{max_mask_diff:.0%})')
    return numbers, problems


def compare(deploy_cfg, model_cfg, torch_model: torch.nn.Module, onnx_file: str,
            images: Sequence[str], score_thr: float = 0.3, logit_tol: float = 1e-4
            ) -> List[Comparison]:
    """Run ``onnx_file`` with onnxruntime through mmdeploy's wrapper and ``torch_model`` on
    each image, both on mmdeploy's preprocessed input (the deploy config's size when static),
    and compare: detections as :func:`compare_detections`; segmentation logits (max abs
    difference, within ``logit_tol``) and their argmax at the input size (equal but where two
    classes tie within the logits' difference), and the predictions the wrapper and mmseg
    return at the image's own size (reported only: where that differs from the input size,
    mmseg resizes the logits bilinearly before the argmax, mmdeploy's wrapper the argmax to
    the nearest pixel)."""
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
            pred, onnx_pred = logits.argmax(1, keepdim=True), onnx_logits.argmax(1, keepdim=True)
            same = float((pred == onnx_pred).double().mean())
            # A pixel may flip only between classes tied within the logits' difference.
            gap = (logits.gather(1, pred) - logits.gather(1, onnx_pred)).abs()
            flips = int(((pred != onnx_pred) & (gap > 2 * max(diff, logit_tol))).sum())
            # At the image's own size: mmseg resizes the logits, mmdeploy's wrapper the argmax.
            same_out = float((ref.pred_sem_seg.data == got.pred_sem_seg.data).float().mean())
            result.numbers = dict(max_logit_diff=diff, same_pixels=same,
                                  same_pixels_original_size=same_out, flips=flips)
            if diff > logit_tol:
                result.problems.append(f'logits {diff:.2e} apart (> {logit_tol:g})')
            if flips:
                result.problems.append(f'{flips} pixels predicted differently (not ties)')
        results.append(result)
    return results
