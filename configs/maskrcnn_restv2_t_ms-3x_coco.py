# Mask R-CNN + FPN, 3x multi-scale, ResTv2-T backbone: the authors' detectron2
# `mask_rcnn_restv2_tiny_FPN_3x` recipe on mmdet 3.x.
#
# Pretrained weights: convert the authors' ImageNet checkpoint to the path below, e.g.
#   python tools/convert_imagenet_ckpt.py restv2_tiny_224.pth checkpoints/restv2_t_in1k.pth \
#       --arch restv2_tiny
# or override model.backbone.init_cfg.checkpoint. Batch: 2 images/GPU x 8 GPUs = upstream's 16.
# Input normalisation (inherited from mmdet): RGB with ImageNet mean/std, as upstream's v2 runs.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py', './_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py', './_base_/det_runtime.py'
]
# The dataset and runtime bases add the plugin import, COCO file checks, strict loading and
# crash-safe checkpoints (docs/checkpoints.md).

model = dict(
    backbone=dict(
        _delete_=True,
        type='ResTV2',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        # Nothing frozen: upstream's v2 builder never passed its FREEZE_AT on.
        frozen_stages=-1,
        # Upstream fine-tuned the stem's BatchNorm per GPU in train mode (not SyncBN).
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/restv2_t_in1k.pth')),
    neck=dict(in_channels=[96, 192, 384, 768]))

# detectron2's v2 augmentation: a random 0.9 x 0.9 crop of the image first (boxes recomputed
# from the cropped masks; crops without objects are kept, as detectron2 keeps them), then the
# short side chosen from 480..800 with the long side <= 1333, then a flip.
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomCrop', crop_type='relative', crop_size=(0.9, 0.9), recompute_bbox=True,
         allow_negative_crop=True),
    dict(type='RandomChoiceResize',
         scales=[(1333, s) for s in (480, 512, 534, 576, 640, 672, 704, 736, 768, 800)],
         keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

# AdamW, weight decay 0.05 except on norm layers (detectron2 0.6: WEIGHT_DECAY_NORM 0), mixed
# precision with a dynamic loss scale (AMP), and the full model's gradient L2 norm clipped to
# 0.01 (upstream's CLIP_VALUE). detectron2 clipped inside optimizer.step(), after GradScaler had
# unscaled the gradients; AmpOptimWrapper also unscales before clipping, so this is the same
# operation. Since gradient norms are far above 0.01, nearly every step is rescaled to norm
# 0.01: for AdamW, nearly invariant to a global gradient scale, this equalises the weight of the
# iterations in its moment estimates rather than removing outliers.
optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=0.01, norm_type=2),
    paramwise_cfg=dict(norm_decay_mult=0.0))

# Upstream: 270k iterations of 16 images, x0.1 at 210k and 250k. COCO train2017 gives 7.3k
# iterations an epoch, so that is 36.8 epochs with steps at 28.7 and 34.1; mmdet's standard 3x
# (36 epochs, steps after 27 and 33) stands in for it. Warm-up: 1000 iterations from 0.001.
max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33],
         gamma=0.1)
]
