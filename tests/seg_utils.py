"""Shared helpers of the segmentation tests."""
from pathlib import Path
from typing import List, Tuple

import torch
from mmengine.structures import PixelData

REPO = Path(__file__).resolve().parents[1]
SEG_CONFIGS = sorted(p.name for p in (REPO / 'configs').glob('*_ade20k-*.py'))
DEMO_CONFIG = REPO / 'configs' / 'demo' / 'fpn_rmt_t_shapes-seg.py'


def seg_batch(num_classes: int, size: Tuple[int, int], n: int = 2) -> Tuple[torch.Tensor, List]:
    """Random images and label maps (with some ignored pixels) as a segmentor takes them."""
    from mmseg.structures import SegDataSample
    h, w = size
    samples = []
    for _ in range(n):
        label = torch.randint(0, num_classes, (1, h, w))
        label[:, :2] = 255
        sample = SegDataSample(gt_sem_seg=PixelData(data=label))
        sample.set_metainfo(dict(img_shape=size, pad_shape=size, ori_shape=size))
        samples.append(sample)
    return torch.randn(n, 3, h, w), samples
