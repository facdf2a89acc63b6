"""A small, deterministic ADE20K-layout dataset of textured shapes for CPU demos and tests.

Every image is a textured background (``wall``) with a few overlapping shapes of other
ADE20K classes, each drawn with its own texture, so a model must look at texture and not only
at colour (``sky``/``water`` and ``tree``/``grass`` share colours). The annotations store the
real ADE20K ids (0 = unlabeled, 1..150), hence the same files work with the 150-class
``ADE20KDataset`` and with a dataset restricted to :data:`SHAPES_CLASSES` through mmseg's
``metainfo`` label mapping. A thin band around every shape and an occasional clutter blob are
left unlabeled (0), as ADE20K leaves object borders and unknown stuff.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image

#: Classes of the generated set, by ADE20K name; the first one is the background.
SHAPES_CLASSES: Tuple[str, ...] = ('wall', 'sky', 'tree', 'grass', 'water', 'car')
#: Their 1-based ids in ADE20K's ``annotations/*.png`` (index in ADE20KDataset.METAINFO + 1).
ADE20K_IDS: Dict[str, int] = dict(wall=1, sky=3, tree=5, grass=10, water=22, car=21)
SPLITS = ('training', 'validation')

Texture = Callable[[np.random.Generator, int, int], np.ndarray]


def _grid(h: int, w: int) -> Tuple[np.ndarray, np.ndarray]:
    return np.mgrid[0:h, 0:w].astype(np.float32)


def _tint(rng: np.random.Generator, rgb: Sequence[float], pattern: np.ndarray) -> np.ndarray:
    """Colour a [0, 1] pattern around ``rgb`` with a per-image jitter of the base colour."""
    base = np.asarray(rgb, np.float32) + rng.uniform(-20, 20, 3)
    return base * (0.6 + 0.4 * pattern[..., None])


def _bricks(rng, h, w):
    y, x = _grid(h, w)
    period = rng.uniform(7, 10)
    mortar = (np.mod(y, period) < 1.5) | (np.mod(x + (y // period % 2) * 8, 16) < 1.5)
    return _tint(rng, (170, 160, 150), np.where(mortar, 0.2, 1.0))


def _gradient(rng, h, w):
    y, _ = _grid(h, w)
    return _tint(rng, (110, 160, 235), 1.0 - 0.5 * y / max(h - 1, 1))


def _blotches(rng, h, w):
    noise = rng.random((h // 6 + 2, w // 6 + 2)).astype(np.float32)
    return _tint(rng, (40, 140, 50), cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC))


def _blades(rng, h, w):
    _, x = _grid(h, w)
    return _tint(rng, (60, 150, 60), 0.5 + 0.5 * np.sin(x * rng.uniform(1.2, 1.6)))


def _waves(rng, h, w):
    y, x = _grid(h, w)
    return _tint(rng, (60, 110, 220), 0.5 + 0.5 * np.sin((x + 2 * y) * 0.35 + 3 * np.sin(x * 0.1)))


def _checks(rng, h, w):
    y, x = _grid(h, w)
    cell = rng.integers(5, 8)
    return _tint(rng, (200, 50, 40), ((y // cell + x // cell) % 2).astype(np.float32))


TEXTURES: Dict[str, Texture] = dict(wall=_bricks, sky=_gradient, tree=_blotches,
                                    grass=_blades, water=_waves, car=_checks)


def _shape_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A random ellipse, rectangle or triangle covering a few percent to a third of the image."""
    mask = np.zeros((h, w), np.uint8)
    cy, cx = rng.integers(0, h), rng.integers(0, w)
    ry, rx = (rng.uniform(0.1, 0.3, 2) * (h, w)).astype(int) + 4
    kind = rng.integers(3)
    if kind == 0:
        cv2.ellipse(mask, (int(cx), int(cy)), (int(rx), int(ry)), float(rng.uniform(0, 180)),
                    0, 360, 1, -1)
    elif kind == 1:
        cv2.rectangle(mask, (int(cx - rx), int(cy - ry)), (int(cx + rx), int(cy + ry)), 1, -1)
    else:
        pts = np.stack([cx + rng.uniform(-1.5, 1.5, 3) * rx, cy + rng.uniform(-1.5, 1.5, 3) * ry],
                       axis=1)
        cv2.fillPoly(mask, [pts.astype(np.int32)], 1)
    return mask.astype(bool)


def make_sample(rng: np.random.Generator, height: int, width: int,
                max_shapes: int = 5) -> Tuple[np.ndarray, np.ndarray]:
    """One RGB image (uint8, HxWx3) and its ADE20K-id label map (uint8, HxW)."""
    background = SHAPES_CLASSES[0]
    image = TEXTURES[background](rng, height, width)
    label = np.full((height, width), ADE20K_IDS[background], np.uint8)
    unlabeled = np.zeros((height, width), bool)
    kernel = np.ones((3, 3), np.uint8)
    for _ in range(rng.integers(1, max_shapes + 1)):
        name = SHAPES_CLASSES[rng.integers(1, len(SHAPES_CLASSES))]
        mask = _shape_mask(rng, height, width)
        image[mask] = TEXTURES[name](rng, height, width)[mask]
        label[mask] = ADE20K_IDS[name]
        unlabeled &= ~mask  # a later shape covers earlier borders
        edge = cv2.dilate(mask.astype(np.uint8), kernel) != cv2.erode(mask.astype(np.uint8), kernel)
        unlabeled |= edge
    if rng.random() < 0.5:  # unknown clutter, left unlabeled like ADE20K's "other" stuff
        clutter = _shape_mask(rng, height, width)
        image[clutter] = rng.uniform(0, 255, (int(clutter.sum()), 3))
        unlabeled |= clutter
    label[unlabeled] = 0
    image += rng.normal(0, 8, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), label


def make_shapes_ade(root: str, num_train: int = 200, num_val: int = 40,
                    size: Tuple[int, int] = (176, 240), seed: int = 0,
                    max_shapes: int = 5) -> Dict[str, int]:
    """Write ``root/images/{training,validation}/*.jpg`` and ``root/annotations/.../*.png``.

    Image sizes vary around ``size`` (height, width) by up to 20 % so that nothing is a
    multiple of 32. The same arguments always give byte-identical files. Returns the number of
    images written per split.
    """
    counts = dict(training=num_train, validation=num_val)
    rng = np.random.default_rng(seed)
    for split in SPLITS:
        img_dir, ann_dir = Path(root, 'images', split), Path(root, 'annotations', split)
        img_dir.mkdir(parents=True, exist_ok=True)
        ann_dir.mkdir(parents=True, exist_ok=True)
        for i in range(counts[split]):
            height, width = (np.asarray(size) * rng.uniform(0.8, 1.2, 2)).astype(int)
            image, label = make_sample(rng, int(height), int(width), max_shapes)
            stem = f'shapes_{split[:3]}_{i:05d}'
            Image.fromarray(image).save(img_dir / f'{stem}.jpg', quality=95)
            Image.fromarray(label).save(ann_dir / f'{stem}.png')
    return counts

