"""The deployed file against the PyTorch model: onnxruntime through mmdeploy's own wrapper
(``build_task_processor(...).build_backend_model``) and PyTorch on the same preprocessed
images; detections matched into twins, segmentation logits and predictions compared.
"""
import copy
import time
from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

from .export import check_size, task_processor

#: Boxes whose coordinates agree within this many pixels are the same box.
SAME_BOX_PX = 0.01


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
