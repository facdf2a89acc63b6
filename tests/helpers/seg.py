"""Shared helpers of the segmentation tests."""
from typing import List, Optional, Set, Tuple

import torch
from mmengine.structures import PixelData

from . import CONFIG_DIR
from .configs import family_configs

#: RMT's ADE20K configs (file names); ResT's are checked in test_rest_configs.py.
SEG_CONFIGS = [f'{name}.py' for name in family_configs('rmt_seg')]
DEMO_CONFIG = CONFIG_DIR / 'demo' / 'fpn_rmt_t_shapes-seg.py'


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


def check_loss_and_predict(model, losses: Optional[Set[str]] = None) -> None:
    """Finite decode (and auxiliary) losses on two 64x96 images (at least ``losses``; default:
    the cross-entropy of each head), then full-size predictions within the model's classes."""
    num_classes = model.decode_head.num_classes
    inputs, samples = seg_batch(num_classes, (64, 96))
    model.train()
    got = model.loss(inputs, samples)
    assert all(torch.isfinite(v).all() for k, v in got.items() if 'loss' in k)
    if losses is None:
        losses = {'decode.loss_ce'} | ({'aux.loss_ce'} if model.with_auxiliary_head else set())
    assert losses <= set(got)
    model.eval()
    with torch.no_grad():
        preds = model.predict(inputs, samples)
    assert [p.pred_sem_seg.data.shape for p in preds] == [(1, 64, 96)] * 2
    assert int(preds[0].pred_sem_seg.data.max()) < num_classes
