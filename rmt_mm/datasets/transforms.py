"""Data checks for segmentation pipelines."""
from __future__ import annotations

import numpy as np
from mmcv.transforms import BaseTransform


class CheckSegLabels(BaseTransform):
    """Refuse a label map that does not fit its image or the dataset's classes.

    Without this check an out-of-range label surfaces as an anonymous index error in the loss
    (or is silently dropped by ``IoUMetric``), and a label map of another size fails deep in a
    crop or is compared to the wrong pixels. Place it right after ``LoadAnnotations``; it reads
    ``ori_shape``, so it also works in test pipelines that resize before loading labels.
    Samples without a label map pass unchanged: mmseg's inference (``MMSegInferencer``,
    ``inference_model``) drops ``LoadAnnotations`` from the test pipeline and keeps the rest.

    Args:
        num_classes: Number of classes the model predicts; valid labels after loading are
            ``0..num_classes-1`` and ``ignore_index``.
        ignore_index: The ignored label (255 in mmseg, also what ``reduce_zero_label`` maps the
            file's 0 to).
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def transform(self, results: dict) -> dict:
        seg = results.get('gt_seg_map')
        if seg is None:
            return results
        path = results.get('seg_map_path', '<label map>')
        if seg.ndim != 2:
            raise ValueError(f'{path}: label map has shape {tuple(seg.shape)}; expected one '
                             'channel of class ids (a palette or grey PNG, not RGB)')
        img_hw = tuple(results['ori_shape'][:2])
        if seg.shape != img_hw:
            raise ValueError(f'{path}: label map is {seg.shape[0]}x{seg.shape[1]} (HxW) but its '
                             f'image {results.get("img_path")} is {img_hw[0]}x{img_hw[1]}')
        bad = np.unique(seg[(seg >= self.num_classes) & (seg != self.ignore_index)])
        if bad.size:
            # Name the values as stored in the file; reduce_zero_label shifted them down by 1.
            shift = int(bool(results.get('reduce_zero_label')))
            stored = (bad.astype(int) + shift).tolist()
            more = ' ...' if len(stored) > 10 else ''
            raise ValueError(
                f'{path}: label values {stored[:10]}{more} are not classes of this dataset: '
                f'after loading{" (reduce_zero_label: value - 1)" if shift else ""} labels must '
                f'be 0..{self.num_classes - 1} or {self.ignore_index} (ignore)')
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_classes={self.num_classes}, '
                f'ignore_index={self.ignore_index})')
