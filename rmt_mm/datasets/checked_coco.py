"""mmdet's ``CocoDataset`` with its annotation file and image files checked (needs mmdet)."""
from __future__ import annotations

import logging
import os.path as osp
from typing import List, Optional

from mmdet.datasets import CocoDataset
from mmdet.datasets.api_wrappers import COCO
from mmengine.fileio import get_local_path
from mmengine.logging import print_log

from .coco_checks import DataError, check_coco, drop_problems, read_coco_json, summarise
from .images import image_file_problem

POLICIES = ('error', 'drop')


class CheckedCocoDataset(CocoDataset):
    """``CocoDataset`` that checks its annotation file when it loads (before training starts)
    with :func:`rmt_mm.datasets.coco_checks.check_coco`, and names an image that cannot be
    decoded when it is read.

    Args:
        bad_annotations: ``'error'`` (default): the first bad annotation or image stops the run
            with one line naming the file and the annotation id. ``'drop'``: bad annotations and
            images are left out, and the log says how many and why; an image that cannot be
            decoded is then skipped in training (still an error in testing).
        check_masks: Check segmentations too; ``None`` (default) does when the pipeline loads
            masks (``LoadAnnotations(with_mask=True)``).
        check_image_files: Check up front that every image file exists and is not empty (local
            files only).
        **kwargs: ``CocoDataset``'s arguments.
    """

    def __init__(self, *args, bad_annotations: str = 'error', check_masks: Optional[bool] = None,
                 check_image_files: bool = True, **kwargs) -> None:
        if bad_annotations not in POLICIES:
            raise ValueError(f'bad_annotations={bad_annotations!r}; expected one of {POLICIES}')
        self.bad_annotations = bad_annotations
        self.check_masks = check_masks
        self.check_image_files = check_image_files
        self._undecodable: set = set()
        super().__init__(*args, **kwargs)

    def _loads_masks(self) -> bool:
        return any(getattr(t, 'with_mask', False) for t in self.pipeline.transforms)

    def _image_path(self, image: dict) -> str:
        return osp.join(self.data_prefix.get('img', ''), image['file_name'])

    def load_data_list(self) -> List[dict]:
        with get_local_path(self.ann_file, backend_args=self.backend_args) as local_path:
            coco = read_coco_json(local_path, name=self.ann_file)
        local_images = self.backend_args is None and '://' not in self.data_prefix.get('img', '')
        report = check_coco(
            coco, self.ann_file,
            self._loads_masks() if self.check_masks is None else self.check_masks,
            self._image_path if self.check_image_files and local_images else None)
        if report.bad and self.bad_annotations == 'error':
            raise DataError(f'{self.ann_file}: {report.bad[0].describe()}; '
                            f'{len(report.bad)} problems in all ({summarise(report.bad)}); '
                            "fix the file, or set the dataset's bad_annotations='drop' to "
                            'leave them out')
        if report.bad:
            print_log(f'{self.ann_file}: dropped {summarise(report.bad)} (bad_annotations='
                      f"'drop'), e.g. {report.bad[0].describe()}", logger='current',
                      level=logging.WARNING)
        if report.degenerate:
            print_log(f'{self.ann_file}: dropped {len(report.degenerate)} zero-size boxes '
                      f'(annotations {[p.ann_id for p in report.degenerate][:10]})',
                      logger='current', level=logging.WARNING)
        if report.past_edge:
            print_log(f'{self.ann_file}: {report.past_edge} boxes reach up to 1 px past their '
                      'image (kept; the pipeline clips them)', logger='current',
                      level=logging.WARNING)
        checked = drop_problems(coco, report.bad + report.degenerate)
        self.COCOAPI = lambda _: _index_coco(checked)  # the parent's loader reads it from here
        try:
            return super().load_data_list()
        finally:
            del self.COCOAPI

    def prepare_data(self, idx: int):
        try:
            return super().prepare_data(idx)
        except Exception as err:
            info = self.get_data_info(idx)
            path = info.get('img_path', '')
            problem = image_file_problem(path) if path else None
            if problem is None:
                raise
            if self.bad_annotations == 'drop' and not self.test_mode:
                if path not in self._undecodable:
                    self._undecodable.add(path)
                    print_log(f'{path} (image {info.get("img_id")}): {problem}; skipped '
                              "(bad_annotations='drop')", logger='current',
                              level=logging.WARNING)
                return None  # mmengine's dataset draws another sample in training
            raise DataError(f'{path} (image {info.get("img_id")}): {problem}') from err


def _index_coco(dataset: dict) -> COCO:
    """A COCO api object over an already loaded (and checked) annotation dict."""
    api = COCO()
    api.dataset = dataset
    api.createIndex()
    api.img_ann_map, api.cat_img_map = api.imgToAnns, api.catToImgs
    return api
