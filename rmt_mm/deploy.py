"""Whole detectors and segmentors to ONNX through mmdeploy (1.3.1), and their check: the
onnxruntime file run through mmdeploy's own wrapper (``build_task_processor(...).
build_backend_model``) against the PyTorch model on the same preprocessed images.

mmdeploy is an optional extra (``pip install 'rmt_mm[deploy]'``), imported only when a function
here needs it. The deploy configs are this repository's (``configs/deploy/``): ONNX at opset 11,
the onnxruntime backend, mmdet's ``ObjectDetection`` task (boxes; with a third ``masks`` output
for Mask R-CNN) or mmseg's ``Segmentation`` task (logits, ``with_argmax=False``).

While mmdeploy traces the model, MaSA runs its export form (:mod:`rmt_mm.models.masa_export`):
it needs no mmdeploy rewriter; its attention blocks are planned for a static file's size, and
for COCO's test size (800x1344) in a dynamic file.
"""
import copy
import os.path as osp
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .errors import ConfigError

#: How to get what this module needs.
INSTALL_HINT = "pip install 'rmt_mm[deploy]'"
#: (codebase, task) pairs the deploy configs may name.
SUPPORTED_TASKS = {'mmdet': 'ObjectDetection', 'mmseg': 'Segmentation'}
#: Boxes whose coordinates agree within this many pixels are the same box.
SAME_BOX_PX = 0.01
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


def nms_iou(cfg, head: str) -> float:
    """The IoU threshold of ``cfg.nms``: plain NMS is what the export writes."""
    if cfg.nms.get('type', 'nms') != 'nms':
        raise ConfigError(f'model.test_cfg: the {head} uses {cfg.nms.type!r}; the export '
                          "writes plain NMS (type='nms')")
    return cfg.nms.iou_threshold


def rpn_proposals(self, cls_scores: List[torch.Tensor], bbox_preds: List[torch.Tensor],
                  score_factors=None, batch_img_metas: Optional[List[dict]] = None, cfg=None,
                  rescale: bool = False, with_nms: bool = True, **kwargs):
    """``RPNHead.predict_by_feat`` as mmdet computes it, in ONNX operators: the ``nms_pre``
    best anchors of each level, decoded; boxes not wider and taller than ``min_bbox_size``
    dropped; NMS within each level (the levels are NMS classes: a box scores only in its
    own level's column); the ``max_per_img`` best kept. mmdeploy 1.3.1's own rewrite
    suppresses across levels and drops proposals scoring below its ``score_threshold``, so
    its proposals, and then the detections, differ from the PyTorch model's.

    Returns ``(dets, level_ids)``, ``dets`` of shape ``(B, N, 5)``, as mmdeploy's RoI heads
    expect.
    """
    from mmdeploy.codebase.mmdet.deploy import gather_topk
    from mmdeploy.core import FUNCTION_REWRITER
    from mmdeploy.mmcv.ops import multiclass_nms
    from mmdeploy.utils import is_dynamic_shape

    cfg = self.test_cfg if cfg is None else cfg
    iou = nms_iou(cfg, 'RPN')
    static = not is_dynamic_shape(FUNCTION_REWRITER.get_context().cfg)
    batch, num_levels = cls_scores[0].shape[0], len(cls_scores)
    anchors_per_level = self.prior_generator.grid_priors(
        [s.shape[-2:] for s in cls_scores], device=cls_scores[0].device)
    nms_pre = cfg.get('nms_pre', -1)
    own_level = torch.eye(num_levels, device=cls_scores[0].device)
    level_scores, level_deltas, level_anchors = [], [], []
    for level, (cls_score, bbox_pred, anchors) in enumerate(
            zip(cls_scores, bbox_preds, anchors_per_level)):
        cls_score = cls_score.permute(0, 2, 3, 1)
        if self.use_sigmoid_cls:
            scores = cls_score.reshape(batch, -1, 1).sigmoid()
        else:  # two-way softmax, foreground first
            scores = cls_score.reshape(batch, -1, 2).softmax(-1)[..., :1]
        deltas = bbox_pred.permute(0, 2, 3, 1).reshape(batch, -1, self.bbox_coder.encode_size)
        anchors = (anchors.data if static else anchors).unsqueeze(0)
        if nms_pre > 0:  # mmdeploy's topk rewrite clamps k to the level's size
            _, top = scores.squeeze(2).topk(nms_pre)
            deltas, scores = gather_topk(deltas, scores, inds=top, batch_size=batch,
                                         is_batched=True)
            anchors = gather_topk(anchors, inds=top, batch_size=batch, is_batched=False)
        level_scores.append(scores * own_level[level].to(scores.dtype))
        level_deltas.append(deltas)
        level_anchors.append(anchors)
    boxes = self.bbox_coder.decode(torch.cat(level_anchors, 1), torch.cat(level_deltas, 1),
                                   max_shape=batch_img_metas[0]['img_shape'])
    scores = torch.cat(level_scores, 1)
    min_size = cfg.get('min_bbox_size', -1)
    if min_size >= 0:
        wide = ((boxes[..., 2:] - boxes[..., :2]) > min_size).all(-1, keepdim=True)
        scores = torch.where(wide, scores, torch.zeros_like(scores))
    # score_threshold 0: only the zeros (other levels' columns, dropped boxes) are removed.
    return multiclass_nms(boxes, scores, cfg.max_per_img, nms_type='nms', iou_threshold=iou,
                          score_threshold=0.0, pre_top_k=-1, keep_top_k=cfg.max_per_img)


def rcnn_detections(self, rois: torch.Tensor, cls_scores: torch.Tensor,
                    bbox_preds: torch.Tensor, batch_img_metas: List[dict], rcnn_test_cfg=None,
                    rescale: bool = False):
    """``BBoxHead.predict_by_feat`` as mmdet computes it, in ONNX operators: each class
    scoring above ``score_thr`` keeps its own regressed box, NMS runs within each class, the
    ``max_per_img`` best kept. mmdeploy 1.3.1's own rewrite gives each RoI its best class's
    box for every class it scores, so a RoI's second class gets a box regressed for another.

    Each (RoI, class) box is an NMS candidate scoring only in its class's column: ``N * C``
    boxes, ``N * C * C`` scores (mmdet itself holds the ``N * C`` boxes). Class-agnostic
    heads (Cascade R-CNN) share one box per RoI. Returns ``(dets, labels)``, as mmdeploy's
    RoI heads expect.
    """
    from mmdeploy.mmcv.ops import multiclass_nms
    from mmdet.structures.bbox import get_box_tensor

    cfg = rcnn_test_cfg
    iou = nms_iou(cfg, 'R-CNN head')
    batch, classes = rois.shape[0], self.num_classes
    if self.custom_cls_channels:
        scores = self.loss_cls.get_activation(cls_scores)
    else:
        scores = torch.softmax(cls_scores, dim=-1)
    scores = scores[..., :classes]
    boxes = get_box_tensor(self.bbox_coder.decode(
        rois[..., 1:], bbox_preds, max_shape=batch_img_metas[0]['img_shape']))
    if not self.reg_class_agnostic:
        own_class = torch.eye(classes, dtype=scores.dtype, device=scores.device)
        boxes = boxes.reshape(batch, -1, 4)
        scores = (scores.unsqueeze(-1) * own_class).reshape(batch, -1, classes)
    return multiclass_nms(boxes, scores, cfg.max_per_img, nms_type='nms', iou_threshold=iou,
                          score_threshold=cfg.score_thr, pre_top_k=-1,
                          keep_top_k=cfg.max_per_img)


def register_rewriters() -> None:
    """mmdeploy rewriters (``FUNCTION_REWRITER``, onnxruntime backend) that make the exported
    graph compute what the PyTorch model computes, at every size of a dynamic file.

    Sizes (stock mmdeploy 1.3.1 freezes both as constants of the traced size, also with
    mmseg's own backbones):

    - ``mmseg.models.utils.Upsample`` (Semantic FPN's scale heads) computes its output size as
      Python ints (``int(t * scale_factor)``): here it interpolates by ``scale_factor``, the
      same size (floor) and sampling, written as a Resize by scales.
    - ``F.adaptive_avg_pool2d`` (UperNet's pyramid pooling): mmdeploy's default rewrite pools
      with a fixed kernel and stride computed from the traced size, exact only where the map
      divides by the output size, and only at the traced size. Here
      :func:`adaptive_avg_pool2d_bins` computes PyTorch's adaptive bins from the runtime
      shape: exact at every size.

    Two-stage post-processing (stock mmdeploy picks other proposals and boxes than mmdet,
    also for mmdet's own backbones): :func:`rpn_proposals` for ``RPNHead.predict_by_feat``
    and :func:`rcnn_detections` for ``BBoxHead.predict_by_feat``.

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

    FUNCTION_REWRITER.register_rewriter(
        func_name='mmdet.models.dense_heads.rpn_head.RPNHead.predict_by_feat',
        backend='onnxruntime')(rpn_proposals)
    FUNCTION_REWRITER.register_rewriter(
        func_name='mmdet.models.roi_heads.bbox_heads.bbox_head.BBoxHead.predict_by_feat',
        backend='onnxruntime')(rcnn_detections)
    _registered = True


def export(deploy_cfg, model_cfg, checkpoint: Optional[str], image: str, work_dir: str,
           save_file: str = 'end2end.onnx') -> str:
    """``mmdeploy.apis.torch2onnx`` of the model on ``image`` (with
    :func:`register_rewriters`); returns the file written."""
    require_mmdeploy()
    register_rewriters()
    from mmdeploy.apis import torch2onnx

    from .models.masa_export import DEFAULT_PLAN, planned_for
    width_height = deploy_cfg.onnx_config.get('input_shape')
    plan = DEFAULT_PLAN if is_dynamic(deploy_cfg) or not width_height else width_height[::-1]
    with planned_for(plan):
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
    label with the largest IoU (1 for boxes equal within :data:`SAME_BOX_PX`). Returned: how
    many were confident and how many had a twin of IoU ``>= min_iou``; over the twins, the
    smallest IoU, the largest box coordinate and score differences and, with masks, the
    largest share of differing pixels within the box; and a problem for each confident
    detection without a twin or mask too far apart."""
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
        # Boxes clipped flat at the border have no area, hence no IoU: equal ones count as 1.
        ious[np.abs(got_boxes[same] - ref_boxes[i]).max(-1) <= SAME_BOX_PX] = 1.0
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


def timed(model, inputs: torch.Tensor, samples) -> Tuple[list, float]:
    """``model(inputs, samples, mode='predict')`` (the data is preprocessed already: predict,
    not test_step) and its wall time in seconds."""
    start = time.perf_counter()
    with torch.no_grad():
        out = model(inputs, samples, mode='predict')
    return out, time.perf_counter() - start


def compare_image_detections(torch_model: torch.nn.Module, backend, inputs: torch.Tensor,
                             samples, score_thr: float) -> Tuple[Dict[str, float], List[str]]:
    """:func:`compare_detections` on one preprocessed image. The exported graph sees only the
    input tensor, so mmdeploy gives it the input's size as ``img_shape``: proposals and boxes
    are clipped to the padded input, where mmdet clips them to the resized image inside the
    padding. The PyTorch side therefore runs with that ``img_shape``; on a padded input, how
    many detections also match mmdet's own (``matched_at_img_shape``) is reported alongside.
    """
    size = tuple(int(v) for v in inputs.shape[-2:])
    as_exported = copy.deepcopy(samples)
    for sample in as_exported:
        sample.set_metainfo(dict(img_shape=size))
    (got, ), onnx_s = timed(backend, inputs, copy.deepcopy(samples))
    (ref, ), torch_s = timed(torch_model, inputs, as_exported)
    numbers, problems = compare_detections(ref.pred_instances, got.pred_instances, score_thr)
    numbers.update(torch_s=torch_s, onnx_s=onnx_s)
    if any(tuple(s.img_shape[:2]) != size for s in samples):
        (own, ), _ = timed(torch_model, inputs, copy.deepcopy(samples))
        at_img_shape, _ = compare_detections(own.pred_instances, got.pred_instances, score_thr)
        numbers['matched_at_img_shape'] = (f'{at_img_shape["matched"]}/'
                                           f'{at_img_shape["confident"]}')
    return numbers, problems


def compare_image_segmentation(torch_model: torch.nn.Module, backend, inputs: torch.Tensor,
                               samples, logit_tol: float
                               ) -> Tuple[Dict[str, float], List[str]]:
    """Logits and predictions of one preprocessed image, as :func:`compare` says."""
    (ref, ), torch_s = timed(torch_model, inputs, copy.deepcopy(samples))
    (got, ), onnx_s = timed(backend, inputs, copy.deepcopy(samples))
    with torch.no_grad():
        logits = torch_model.encode_decode(inputs, [s.metainfo for s in samples])
        onnx_logits = backend.wrapper({backend.input_name: inputs})['output']
    diff = float((logits - onnx_logits).abs().max())
    pred, onnx_pred = logits.argmax(1, keepdim=True), onnx_logits.argmax(1, keepdim=True)
    # A pixel may flip only between classes tied within the logits' difference.
    gap = (logits.gather(1, pred) - logits.gather(1, onnx_pred)).abs()
    flips = int(((pred != onnx_pred) & (gap > 2 * max(diff, logit_tol))).sum())
    # At the image's own size: mmseg resizes the logits, mmdeploy's wrapper the argmax.
    same_out = float((ref.pred_sem_seg.data == got.pred_sem_seg.data).float().mean())
    numbers = dict(max_logit_diff=diff, same_pixels=float((pred == onnx_pred).double().mean()),
                   same_pixels_original_size=same_out, flips=flips, torch_s=torch_s,
                   onnx_s=onnx_s)
    problems = []
    if diff > logit_tol:
        problems.append(f'logits {diff:.2e} apart (> {logit_tol:g})')
    if flips:
        problems.append(f'{flips} pixels predicted differently (not ties)')
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
    the nearest pixel). Each line also gives the wall time of each side's prediction
    (``torch_s``: the PyTorch model; ``onnx_s``: mmdeploy's wrapper, onnxruntime and its
    post-processing), one run each: a first image's includes warm-up."""
    from mmdeploy.utils import get_input_shape
    processor = task_processor(deploy_cfg, model_cfg)
    backend = processor.build_backend_model(
        [onnx_file], data_preprocessor_updater=processor.update_data_preprocessor)
    results = []
    for image in images:
        data, inputs = processor.create_input(image, get_input_shape(deploy_cfg),
                                              data_preprocessor=torch_model.data_preprocessor)
        inputs = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        check_size(torch_model, inputs)
        result = Comparison(image, tuple(int(v) for v in inputs.shape[-2:]))
        if deploy_cfg.codebase_config.type == 'mmdet':
            result.numbers, result.problems = compare_image_detections(
                torch_model, backend, inputs, data['data_samples'], score_thr)
        else:
            result.numbers, result.problems = compare_image_segmentation(
                torch_model, backend, inputs, data['data_samples'], logit_tol)
        results.append(result)
    return results
