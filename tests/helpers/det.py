"""Helpers shared by the detection tests."""
from typing import List, Optional, Set

import numpy as np
import torch
from torch import nn

from . import CONFIG_DIR

DEMO_CONFIG = CONFIG_DIR / 'demo' / 'maskrcnn_rmt_t_shapes.py'


def data_options(data_root: str, img_scale: int = 128) -> List[str]:
    """--cfg-options pointing the demo config at another COCO-format set, at a small scale."""
    root = data_root.rstrip('/') + '/'
    opts = [f'{split}_dataloader.dataset.data_root={root}' for split in ('train', 'val', 'test')]
    opts += [f'{split}_evaluator.ann_file={root}annotations/val.json' for split in ('val', 'test')]
    opts += [f'train_dataloader.dataset.pipeline.2.scale=({img_scale},{img_scale})',
             f'val_dataloader.dataset.pipeline.1.scale=({img_scale},{img_scale})',
             f'test_dataloader.dataset.pipeline.1.scale=({img_scale},{img_scale})']
    return opts



def fake_detection_batch(model, height: int, width: int):
    """One image with two boxes and masks, run through the model's data preprocessor."""
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData

    boxes = [[4, 6, 40, 50], [30, 10, 60, 40]]
    masks = np.zeros((2, height, width), np.uint8)
    for mask, (x0, y0, x1, y1) in zip(masks, boxes):
        mask[y0:y1, x0:x1] = 1
    sample = DetDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width),
                                         scale_factor=(1.0, 1.0)))
    sample.gt_instances = InstanceData(bboxes=torch.tensor(boxes, dtype=torch.float32),
                                       labels=torch.tensor([0, 1]),
                                       masks=BitmapMasks(masks, height, width))
    gen = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, height, width), generator=gen, dtype=torch.uint8)
    return model.data_preprocessor(dict(inputs=[image], data_samples=[sample]), training=True)


def build_detector(cfg, arch: Optional[dict] = None):
    """``cfg.model`` built and initialised for a CPU smoke test: no checkpoint, BN instead of
    SyncBN (which needs a process group), optionally another backbone ``arch`` (the neck's
    widths follow its ``out_indices``), and fewer proposals, sampled RoIs and detections (same
    architecture, cheaper RoI heads)."""
    from mmdet.registry import MODELS
    backbone = cfg.model.backbone
    backbone.init_cfg = None
    backbone.norm_cfg = dict(type='BN', requires_grad=True)
    if arch is not None:
        backbone.arch = arch
        cfg.model.neck.in_channels = [arch['embed_dims'][i] for i in backbone.out_indices]
    train_cfg, test_cfg = cfg.model.train_cfg, cfg.model.test_cfg
    if 'rpn' in test_cfg:
        train_cfg.rpn_proposal.max_per_img = 64
        for stage in train_cfg.rcnn if isinstance(train_cfg.rcnn, list) else [train_cfg.rcnn]:
            stage.sampler.num = 32
        test_cfg.rpn.max_per_img = 50
        test_cfg.rcnn.max_per_img = 5
    else:
        test_cfg.max_per_img = 5
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def check_loss_and_predict(model, trained: nn.Module, with_masks: bool) -> None:
    """One training step on a 64x96 image (finite loss, finite gradients in every parameter of
    ``trained``), then a prediction of at most 5 boxes, with full-size masks iff
    ``with_masks``."""
    data = fake_detection_batch(model, 64, 96)
    model.train()
    loss, _ = model.parse_losses(model.loss(data['inputs'], data['data_samples']))
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in trained.parameters()]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    model.eval()
    with torch.no_grad():
        result, = model.predict(data['inputs'], data['data_samples'])
    pred = result.pred_instances
    assert pred.bboxes.shape[1] == 4 and len(pred.bboxes) <= 5
    assert ('masks' in pred) == with_masks
    if with_masks:
        assert tuple(pred.masks.shape[1:]) == (64, 96)


def train_short_sides(cfg, root: str, samples: int = 12) -> Set[int]:
    """Run ``cfg``'s training pipeline over a generated 3-image COCO set in ``root``, check
    that every sample's boxes and masks fit its image, and return the short sides seen."""
    from mmdet.registry import DATASETS

    from rmt_mm.datasets.shapes import make_split
    make_split(root, 'train', 3, seed=3, size_range=(200, 260), empty_prob=0.0)
    dataset = cfg.train_dataloader.dataset
    dataset.update(data_root=root, ann_file='annotations/train.json',
                   data_prefix=dict(img='train/'),
                   metainfo=dict(classes=('circle', 'square', 'triangle')))
    dataset = DATASETS.build(dataset)
    short_sides = set()
    for i in range(samples):
        out = dataset[i % len(dataset)]
        h, w = out['inputs'].shape[1:]
        short_sides.add(min(h, w))
        inst = out['data_samples'].gt_instances
        assert len(inst.masks) == len(inst.bboxes)
        assert inst.masks.height == h and inst.masks.width == w
        boxes = inst.bboxes.tensor
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
    return short_sides
