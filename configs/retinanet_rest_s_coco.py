# RetinaNet + FPN, 1x, ResT-S (v1) backbone: the authors' detectron2
# `retinanet_rest_small_FPN_1x` recipe on mmdet 3.x (solver in _base_/schedules/rest_d2_1x.py).
#
# Pretrained weights: convert the authors' ImageNet checkpoint to the path below, e.g.
#   python tools/convert_imagenet_ckpt.py rest_small.pth checkpoints/rest_s_in1k.pth \
#       --arch rest_small
# or override model.backbone.init_cfg.checkpoint. Batch: 2 images/GPU x 8 GPUs = upstream's 16.
# Input normalisation: RGB, ImageNet mean/std, not upstream's BGR/std 1 (see the Mask R-CNN
# config).
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py', './_base_/datasets/coco_detection.py',
    './_base_/schedules/rest_d2_1x.py', './_base_/det_runtime.py'
]
# The dataset and runtime bases add the plugin import, COCO file checks, strict loading and
# crash-safe checkpoints (docs/checkpoints.md).

model = dict(
    backbone=dict(
        _delete_=True,
        type='ResT',
        arch='small',
        # Stages 2-4 only, as upstream: stage 1 feeds stage 2 without an output norm, so the
        # trunk differs from the Mask R-CNN one (see the ResT docstring).
        out_indices=(1, 2, 3),
        drop_path_rate=0.1,
        frozen_stages=1,  # detectron2 FREEZE_AT=2: the stem and stage 1
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/rest_s_in1k.pth')),
    # P3-P5 from stages 2-4; P6 and P7 from C5 with a ReLU before P7, as detectron2's
    # LastLevelP6P7 (mmdet's RetinaNet default omits the ReLU).
    neck=dict(in_channels=[128, 256, 512], start_level=0, add_extra_convs='on_input',
              relu_before_extra_convs=True))

# detectron2 ResizeShortestEdge: short side chosen from 640..800 (step 32), long side <= 1333.
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomChoiceResize', scales=[(1333, s) for s in range(640, 801, 32)],
         keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
