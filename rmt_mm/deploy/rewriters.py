"""mmdeploy rewriters (``FUNCTION_REWRITER``, onnxruntime backend) that make the exported
graph compute what the PyTorch model computes, at every size of a dynamic file. They are
registered while an export or a check runs (:func:`register_rewriters`); mmdeploy is imported
only inside them.
"""
from typing import List, Optional

import torch
import torch.nn.functional as F

from ..errors import ConfigError


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


def upsample_by_scale(self, x: torch.Tensor) -> torch.Tensor:
    """``mmseg.models.utils.Upsample.forward`` by its ``scale_factor``. mmseg computes the
    output size as Python ints (``int(t * scale_factor)``), which the tracer freezes as
    constants of the traced size (Semantic FPN's scale heads); interpolating by the factor
    gives the same size (floor) and sampling, written as a Resize by scales."""
    from mmdeploy.core import FUNCTION_REWRITER
    if self.size or not self.scale_factor:
        return FUNCTION_REWRITER.get_context().origin_func(self, x)
    return F.interpolate(x, scale_factor=self.scale_factor, mode=self.mode,
                         align_corners=self.align_corners)


def adaptive_avg_pool2d_any_size(input: torch.Tensor, output_size) -> torch.Tensor:
    """``F.adaptive_avg_pool2d`` (UperNet's pyramid pooling) as
    :func:`adaptive_avg_pool2d_bins`. mmdeploy's own rewrite pools with a kernel and stride
    computed from the traced size: exact only where the map divides by the output size, and
    only at the traced size."""
    from mmdeploy.core import FUNCTION_REWRITER
    from torch.nn.modules.utils import _pair
    oh, ow = (int(v) for v in _pair(output_size))
    if oh == ow == 1:
        return FUNCTION_REWRITER.get_context().origin_func(input, output_size)
    return adaptive_avg_pool2d_bins(input, oh, ow)


def einsum_as_bmm(equation: str, *operands: torch.Tensor) -> torch.Tensor:
    """``torch.einsum`` of two operands that share a leading batch index and contract one
    other index (Mask2Former's ``bqc,bchw->bqhw`` and ``bqc,bqhw->bchw``) as one batched
    matmul: ONNX has ``Einsum`` from opset 12 only. Other equations go to ``torch.einsum``."""
    from mmdeploy.core import FUNCTION_REWRITER
    origin = FUNCTION_REWRITER.get_context().origin_func
    inputs, _, out = equation.replace(' ', '').partition('->')
    terms = inputs.split(',')
    if (len(terms) != 2 or len(operands) != 2 or not out
            or any(len(set(term)) != len(term) for term in terms)):  # diagonals: einsum's own
        return origin(equation, *operands)
    (a, b), (ta, tb) = terms, operands
    shared = set(a) & set(b)
    summed = shared - set(out)
    batch = a[0]
    if (len(summed) != 1 or shared != {batch} | summed or b[0] != batch or out[0] != batch
            or sorted(out) != sorted(set(a + b) - summed)):
        return origin(equation, *operands)
    k = summed.pop()
    free_a = [i for i in a[1:] if i != k]
    free_b = [i for i in b[1:] if i != k]
    left = ta.permute([a.index(i) for i in [batch, *free_a, k]])
    right = tb.permute([b.index(i) for i in [batch, k, *free_b]])
    shape = [*left.shape[:-1], *right.shape[2:]]
    product = torch.bmm(left.flatten(1, -2) if free_a else left.unsqueeze(1),
                        right.flatten(2) if free_b else right.unsqueeze(-1)).reshape(shape)
    order = [batch, *free_a, *free_b]
    return product.permute([order.index(i) for i in out])


def mask2former_seg_logits(self, x: List[torch.Tensor], batch_img_metas: List[dict],
                           test_cfg) -> torch.Tensor:
    """mmseg's ``Mask2FormerHead.predict`` without its ``SegDataSample`` per image (a deep
    copy of the traced shape, which the tracer refuses) and upsampled to the input's size
    (mmseg takes ``pad_shape``, a constant of the traced image, where the meta has one)."""
    all_cls_scores, all_mask_preds = self(x, batch_img_metas)
    masks = F.interpolate(all_mask_preds[-1], size=batch_img_metas[0]['img_shape'],
                          mode='bilinear', align_corners=False).sigmoid()
    scores = F.softmax(all_cls_scores[-1], dim=-1)[..., :-1]
    return torch.einsum('bqc,bqhw->bchw', scores, masks)


#: What each rewriter replaces, for the onnxruntime backend. Stock mmdeploy 1.3.1 freezes the
#: first two sizes as constants of the traced size (also with mmseg's own backbones) and picks
#: other proposals and boxes than mmdet in the last two (also with mmdet's own backbones).
REWRITERS = (
    ('mmseg.models.utils.wrappers.Upsample.forward', upsample_by_scale),
    ('torch.nn.functional.adaptive_avg_pool2d', adaptive_avg_pool2d_any_size),
    ('mmdet.models.dense_heads.rpn_head.RPNHead.predict_by_feat', rpn_proposals),
    ('mmdet.models.roi_heads.bbox_heads.bbox_head.BBoxHead.predict_by_feat', rcnn_detections),
    ('mmseg.models.decode_heads.mask2former_head.Mask2FormerHead.predict',
     mask2former_seg_logits),
    ('torch.einsum', einsum_as_bmm),
)

_registered = False


def register_rewriters() -> None:
    """Register :data:`REWRITERS` with mmdeploy, once, when an export or a check first needs
    them."""
    global _registered
    if _registered:
        return
    from mmdeploy.core import FUNCTION_REWRITER
    for func_name, rewriter in REWRITERS:
        FUNCTION_REWRITER.register_rewriter(func_name=func_name, backend='onnxruntime')(rewriter)
    _registered = True
