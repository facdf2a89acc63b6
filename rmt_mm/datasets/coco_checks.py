"""Checks of COCO-format instance annotations: the detection counterpart of ``CheckSegLabels``.

mmdet's ``CocoDataset`` trusts its annotation file: a truncated file fails as a JSON traceback, a
category id outside ``categories`` or a polygon of two points fails deep in a transform (or is
silently ignored), a box outside its image trains on garbage. :func:`check_coco` finds all of
that when the file loads, before training starts, and names the file and the annotation id.
This module needs no mmdet; :class:`rmt_mm.datasets.checked_coco.CheckedCocoDataset` applies it.

Allowed with a warning, not refused: boxes of zero width or height (COCO train2017 holds two;
mmdet ignores such boxes anyway, so they are dropped and their ids logged), and boxes that reach
at most :data:`EDGE_TOLERANCE` pixels past the image border (annotation rounding; mmdet clips
them).
"""
from __future__ import annotations

import json
import math
import os
import os.path as osp
from collections import Counter
from typing import Callable, Dict, List, NamedTuple, Optional

from ..errors import DataError

#: How far (pixels) a box may reach past its image before it counts as outside.
EDGE_TOLERANCE = 1.0


class Problem(NamedTuple):
    """One bad annotation (or image, then ``ann_id`` is ``None``)."""
    ann_id: Optional[object]
    image_id: Optional[object]
    reason: str  # a short kind, e.g. 'category not in categories'
    detail: str  # the specifics, e.g. 'category_id 9'
    entry: Optional[int] = None  # position in the file's annotation list

    def describe(self) -> str:
        where = (f'annotation {self.ann_id} (image {self.image_id})' if self.ann_id is not None
                 else f'image {self.image_id}')
        return f'{where}: {self.reason} ({self.detail})'


class CocoReport(NamedTuple):
    bad: List[Problem]  # refused by default, dropped on request
    degenerate: List[Problem]  # zero-size boxes: always dropped, with a warning
    past_edge: int  # boxes within EDGE_TOLERANCE past their image: kept, with a warning


def read_coco_json(path: str, name: Optional[str] = None) -> dict:
    """Load a COCO annotation file with one-line errors (missing, empty, not JSON, truncated,
    not a COCO instance file)."""
    name = name or path
    if not osp.isfile(path):
        raise DataError(f'{name}: annotation file not found')
    if osp.getsize(path) == 0:
        raise DataError(f'{name}: annotation file is empty')
    try:
        with open(path, encoding='utf-8') as f:
            coco = json.load(f)
    except UnicodeDecodeError as err:
        raise DataError(f'{name}: not a JSON text file ({err.reason} at byte {err.start})') \
            from None
    except json.JSONDecodeError as err:
        truncated = ' (truncated?)' if err.pos >= osp.getsize(path) - 1 else ''
        raise DataError(f'{name}: not valid JSON{truncated}: {err.msg} at line {err.lineno} '
                        f'column {err.colno}') from None
    if not isinstance(coco, dict):
        raise DataError(f'{name}: a JSON {type(coco).__name__}, not a COCO annotation object')
    for key in ('images', 'annotations', 'categories'):
        if not isinstance(coco.get(key), list):
            raise DataError(f'{name}: no "{key}" list (keys: {sorted(coco)[:8]}); not a COCO '
                            'instance annotation file')
    return coco


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


def _index(entries: List[object], what: str, name: str) -> Dict[object, dict]:
    """``id -> entry``, refusing entries that are not objects with a unique id."""
    index: Dict[object, dict] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or 'id' not in entry:
            raise DataError(f'{name}: {what} entry #{i} has no "id" ({str(entry)[:60]})')
        if entry['id'] in index:
            raise DataError(f'{name}: {what} id {entry["id"]} appears twice')
        index[entry['id']] = entry
    return index


def _image_problem(image: dict) -> Optional[str]:
    if not all(_number(image.get(k)) and image[k] > 0 for k in ('width', 'height')):
        return f'width/height {image.get("width")}/{image.get("height")} are not positive'
    if not isinstance(image.get('file_name'), str) or not image['file_name']:
        return 'no file_name'
    return None


def _box_problem(bbox: object, width: float, height: float) -> Optional[tuple]:
    """(reason, detail) for a bad ``[x, y, w, h]``; reason ``'zero-size box'`` is degenerate."""
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(map(_number, bbox)):
        return 'malformed box', f'bbox {str(bbox)[:60]}; expected 4 finite numbers'
    x, y, w, h = bbox
    if w < 0 or h < 0:
        return 'box with negative size', f'bbox {bbox}'
    if w == 0 or h == 0:
        return 'zero-size box', f'bbox {bbox}'
    tol = EDGE_TOLERANCE
    if x < -tol or y < -tol or x + w > width + tol or y + h > height + tol:
        return 'box outside its image', f'bbox {bbox}, image {width:g}x{height:g} (WxH)'
    return None


def _mask_problem(segmentation: object, width: float, height: float) -> Optional[tuple]:
    if isinstance(segmentation, list):
        if not segmentation:
            return 'no segmentation', 'empty polygon list; the config trains masks'
        for i, polygon in enumerate(segmentation):
            if not isinstance(polygon, list) or not all(map(_number, polygon)):
                return 'malformed polygon', f'polygon {i} is not a list of finite numbers'
            if len(polygon) % 2 or len(polygon) < 6:
                return ('polygon with fewer than 3 points', f'polygon {i} has {len(polygon)} '
                        'coordinates' + (' (an odd count)' if len(polygon) % 2 else ''))
        return None
    if isinstance(segmentation, dict):
        size = segmentation.get('size')
        if 'counts' not in segmentation or not isinstance(size, list) or len(size) != 2:
            return 'malformed RLE', f'keys {sorted(segmentation)}; expected counts and size'
        if list(size) != [height, width]:
            return ('RLE size differs from its image', f'size {size} (HxW), image '
                    f'{height:g}x{width:g}')
        return None
    return 'no segmentation', f'segmentation is {type(segmentation).__name__}; the config ' \
                              'trains masks'


def check_coco(coco: dict, name: str, check_masks: bool = True,
               image_path: Optional[Callable[[dict], str]] = None) -> CocoReport:
    """Check every annotation of ``coco`` (see the module docstring) and, given ``image_path``
    (image entry -> local file), that every image file exists and is not empty."""
    images = _index(coco['images'], 'image', name)
    categories = _index(coco['categories'], 'category', name)
    bad, degenerate, past_edge = [], [], 0
    bad_images = set()
    for image_id, image in images.items():
        problem = _image_problem(image)
        if problem is None and image_path is not None:
            path = image_path(image)
            if not osp.isfile(path):
                problem = f'image file not found: {path}'
            elif os.path.getsize(path) == 0:
                problem = f'image file is empty: {path}'
        if problem is not None:
            bad_images.add(image_id)
            kind = 'image file missing or empty' if 'file' in problem else 'malformed image'
            bad.append(Problem(None, image_id, kind, problem))
    seen_ids = set()
    for i, ann in enumerate(coco['annotations']):
        if not isinstance(ann, dict):
            raise DataError(f'{name}: annotation entry #{i} is a {type(ann).__name__}')
        ann_id, image_id = ann.get('id', f'#{i}'), ann.get('image_id')
        found = None
        if 'id' not in ann:
            found = ('malformed annotation', 'no "id"')
        elif ann_id in seen_ids:
            found = ('duplicate annotation id', f'id {ann_id} appears twice')
        elif image_id not in images:
            found = ('image not in images', f'image_id {image_id}')
        elif ann.get('category_id') not in categories:
            found = ('category not in categories', f'category_id {ann.get("category_id")}')
        seen_ids.add(ann_id)
        if found is None and image_id not in bad_images:
            image = images[image_id]
            found = _box_problem(ann.get('bbox'), image['width'], image['height'])
            if found is None:
                x, y, w, h = ann['bbox']
                past_edge += x < 0 or y < 0 or x + w > image['width'] or \
                    y + h > image['height']
                if check_masks:
                    found = _mask_problem(ann.get('segmentation'), image['width'],
                                          image['height'])
        if found is not None:
            target = degenerate if found[0] == 'zero-size box' else bad
            target.append(Problem(ann_id, image_id, *found, entry=i))
    return CocoReport(bad, degenerate, past_edge)


def summarise(problems: List[Problem]) -> str:
    """``'3 category not in categories, 1 polygon with fewer than 3 points'``."""
    return ', '.join(f'{n} {reason}' for reason, n in Counter(p.reason for p in problems)
                     .most_common())


def drop_problems(coco: dict, problems: List[Problem]) -> dict:
    """``coco`` without the annotations of ``problems`` and the images they name (with their
    annotations)."""
    images = {p.image_id for p in problems if p.entry is None}
    entries = {p.entry for p in problems if p.entry is not None}
    kept = dict(coco)
    kept['images'] = [img for img in coco['images'] if img['id'] not in images]
    kept['annotations'] = [ann for i, ann in enumerate(coco['annotations'])
                           if i not in entries and ann.get('image_id') not in images]
    return kept
