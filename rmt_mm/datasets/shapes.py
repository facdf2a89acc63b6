"""A small, deterministic COCO-format instance-segmentation set of coloured shapes.

It stands in for COCO where COCO cannot be used (CPU demo, tests): every mask is the exact
polygon that was painted, shapes never overlap (so no mask is occluded), image sizes vary, some
images hold no object and some hold an ``iscrowd`` cluster, which COCO evaluation must ignore.
"""
import json
import math
import os.path as osp
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

CATEGORIES = ('circle', 'square', 'triangle')
#: Vertices of each category's polygon (a circle is painted as a 32-gon, so masks stay exact).
_VERTICES = {'circle': 32, 'square': 4, 'triangle': 3}
_MAX_TRIES = 50


def _polygon(category: str, cx: float, cy: float, radius: float,
             angle: float) -> np.ndarray:
    """Integer (n, 2) vertices of a regular polygon; integers so painting and mask agree."""
    n = _VERTICES[category]
    theta = angle + 2 * math.pi * np.arange(n) / n
    pts = np.stack([cx + radius * np.cos(theta), cy + radius * np.sin(theta)], axis=1)
    return np.round(pts).astype(np.int32)


def _overlaps(box: Sequence[float], boxes: List[Sequence[float]], margin: float = 2) -> bool:
    x0, y0, x1, y1 = box
    return any(x0 < b[2] + margin and b[0] < x1 + margin and y0 < b[3] + margin
               and b[1] < y1 + margin for b in boxes)


def _bbox(pts: np.ndarray) -> List[float]:
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    return [float(x0), float(y0), float(x1), float(y1)]


def _rle(mask: np.ndarray) -> Dict:
    """Uncompressed COCO RLE (column-major run lengths, starting with a zero run)."""
    flat = mask.flatten(order='F').astype(np.uint8)
    change = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    counts = np.diff(np.concatenate([[0], change])).tolist()
    return {'size': [int(mask.shape[0]), int(mask.shape[1])], 'counts': counts}


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A soft colour gradient with noise, so the model cannot rely on a flat background."""
    c0, c1 = rng.uniform(40, 215, size=(2, 3))
    t = np.linspace(0, 1, w)[None, :, None] if rng.random() < 0.5 \
        else np.linspace(0, 1, h)[:, None, None]
    img = c0 + (c1 - c0) * t + rng.normal(0, 8, size=(h, w, 3))
    return np.clip(np.broadcast_to(img, (h, w, 3)), 0, 255).astype(np.uint8)


def render_image(rng: np.random.Generator, size: Tuple[int, int], max_objects: int,
                 empty_prob: float, crowd_prob: float) -> Tuple[np.ndarray, List[Dict]]:
    """Paint one image; return it (BGR) and its annotations without ids."""
    h, w = size
    img = np.ascontiguousarray(_background(rng, h, w))
    anns, boxes = [], []
    num = 0 if rng.random() < empty_prob else int(rng.integers(1, max_objects + 1))
    for _ in range(num):
        for _ in range(_MAX_TRIES):
            category = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
            radius = rng.uniform(10, min(h, w) / 4)
            cx = rng.uniform(radius + 1, w - radius - 1)
            cy = rng.uniform(radius + 1, h - radius - 1)
            pts = _polygon(category, cx, cy, radius, rng.uniform(0, 2 * math.pi))
            box = _bbox(pts)
            if not _overlaps(box, boxes):
                break
        else:
            continue
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        cv2.fillPoly(img, [pts], colour)
        boxes.append(box)
        anns.append(dict(category_id=CATEGORIES.index(category) + 1,
                         segmentation=[pts.astype(float).flatten().tolist()],
                         bbox=[box[0], box[1], box[2] - box[0], box[3] - box[1]],
                         area=float(cv2.contourArea(pts.astype(np.float32))), iscrowd=0))
    if num and rng.random() < crowd_prob:
        anns += _paint_crowd(rng, img, boxes)
    return img, anns


def _paint_crowd(rng: np.random.Generator, img: np.ndarray,
                 boxes: List[Sequence[float]]) -> List[Dict]:
    """A cluster of small circles annotated as one ``iscrowd=1`` RLE region, if it fits."""
    h, w = img.shape[:2]
    side = int(min(h, w) / 4)
    for _ in range(_MAX_TRIES):
        x0, y0 = int(rng.integers(0, w - side)), int(rng.integers(0, h - side))
        if not _overlaps((x0, y0, x0 + side, y0 + side), boxes):
            break
    else:
        return []
    mask = np.zeros((h, w), np.uint8)
    for _ in range(8):
        pts = _polygon('circle', x0 + rng.uniform(4, side - 4), y0 + rng.uniform(4, side - 4),
                       3.5, 0.0)
        cv2.fillPoly(mask, [pts], 1)
    img[mask.astype(bool)] = rng.integers(0, 256, size=3)
    ys, xs = np.nonzero(mask)
    bbox = [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
            float(ys.max() - ys.min() + 1)]
    category = CATEGORIES.index('circle') + 1
    return [dict(category_id=category, segmentation=_rle(mask), bbox=bbox,
                 area=float(mask.sum()), iscrowd=1)]


def make_split(out_dir: str, split: str, num_images: int, seed: int,
               size_range: Tuple[int, int] = (160, 256), max_objects: int = 4,
               empty_prob: float = 0.1, crowd_prob: float = 0.1) -> str:
    """Write ``out_dir/{split}/*.png`` and ``out_dir/annotations/{split}.json``; return the
    annotation path. The same arguments always give byte-identical files."""
    rng = np.random.default_rng(seed)
    img_dir = Path(out_dir, split)
    ann_dir = Path(out_dir, 'annotations')
    img_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        h, w = (int(v) for v in rng.integers(size_range[0], size_range[1] + 1, size=2))
        img, anns = render_image(rng, (h, w), max_objects, empty_prob, crowd_prob)
        name = f'{image_id:06d}.png'
        cv2.imwrite(str(img_dir / name), img)
        images.append(dict(id=image_id, file_name=name, height=h, width=w))
        for ann in anns:
            annotations.append(dict(id=len(annotations) + 1, image_id=image_id, **ann))
    coco = dict(images=images, annotations=annotations,
                categories=[dict(id=i + 1, name=n, supercategory='shape')
                            for i, n in enumerate(CATEGORIES)])
    path = ann_dir / f'{split}.json'
    path.write_text(json.dumps(coco))
    return str(path)


def make_shapes_coco(out_dir: str, num_train: int = 200, num_val: int = 50, seed: int = 0,
                     **kwargs) -> Dict[str, str]:
    """Generate the train and val splits (disjoint seeds); return their annotation files."""
    return {split: make_split(out_dir, split, n, seed * 2 + i, **kwargs)
            for i, (split, n) in enumerate((('train', num_train), ('val', num_val)))}


def dataset_summary(ann_file: str) -> Optional[str]:
    """One line: images, empty images, instances and crowd regions of an annotation file."""
    if not osp.isfile(ann_file):
        return None
    coco = json.loads(Path(ann_file).read_text())
    with_objects = {a['image_id'] for a in coco['annotations'] if not a['iscrowd']}
    crowd = sum(a['iscrowd'] for a in coco['annotations'])
    return (f"{len(coco['images'])} images ({len(coco['images']) - len(with_objects)} without "
            f"objects), {len(coco['annotations']) - crowd} instances, {crowd} crowd regions")
