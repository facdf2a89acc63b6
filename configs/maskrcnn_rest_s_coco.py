# Mask R-CNN + FPN, 1x, ResT-S (v1) backbone: the authors' detectron2
# `mask_rcnn_rest_small_FPN_1x` recipe on mmdet 3.x (solver in _base_/schedules/rest_d2_1x.py).
#
# Pretrained weights: convert the authors' ImageNet checkpoint to the path below, e.g.
#   python tools/convert_imagenet_ckpt.py rest_small.pth checkpoints/rest_s_in1k.pth \
#       --arch rest_small
# or override model.backbone.init_cfg.checkpoint. Batch: 2 images/GPU x 8 GPUs = upstream's 16.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py', './_base_/datasets/coco_instance.py',
    './_base_/schedules/rest_d2_1x.py', './_base_/det_runtime.py'
]
# The dataset and runtime bases add the plugin import, COCO file checks, strict loading and
# crash-safe checkpoints (docs/checkpoints.md).

# Input normalisation (inherited from mmdet): RGB with ImageNet mean/std, the statistics the
# ImageNet weights were trained with. Deliberately not upstream's: its v1 runs fed BGR images
# with mean [103.53, 116.28, 123.675] and std 1 (a detectron2 default the authors later called
# a mistake and fixed for v2), i.e. channel-swapped inputs ~58x larger than in pre-training.
model = dict(
    backbone=dict(
        _delete_=True,
        type='ResT',
        arch='small',
        # All four stages, as upstream's Mask R-CNN: in-line output norms norm1..3 and `norm`.
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        # detectron2 FREEZE_AT=2: the stem and stage 1 (here including stage 1's fresh output
        # norm, whose affine the next linear layers can absorb; see the README).
        frozen_stages=1,
        # Upstream fine-tuned with per-GPU BatchNorm in train mode (never SyncBN or FrozenBN).
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/rest_s_in1k.pth')),
    neck=dict(in_channels=[64, 128, 256, 512]))

# detectron2 ResizeShortestEdge: short side chosen from 640..800 (step 32), long side <= 1333.
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomChoiceResize', scales=[(1333, s) for s in range(640, 801, 32)],
         keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
