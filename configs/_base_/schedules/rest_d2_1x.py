# The solver of the authors' detectron2 ResTv1 1x runs (reference §4.1), shared by the ResT
# Mask R-CNN and RetinaNet configs.
#
# Schedule: upstream runs 90k iterations of 16 images with x0.1 at 60k and 80k. COCO train2017
# has 117k images with annotations (7.3k iterations an epoch at batch 16), so that is 12.3
# epochs with steps at 8.2 and 10.9: mmdet's 1x (12 epochs, steps after epochs 8 and 11).
_base_ = 'mmdet::_base_/schedules/schedule_1x.py'

# AdamW as upstream's detectron2 0.4 built it (fp32, no gradient clipping): weight decay 0.05
# on weights, none on norm layers (WEIGHT_DECAY_NORM 0), and 1e-4 = 0.05 x 0.002 on biases:
# upstream's config set WEIGHT_DECAY after its defaults had copied the old 1e-4 into
# WEIGHT_DECAY_BIAS. (detectron2 gave norm biases that 1e-4 too; mmengine's norm rule wins, a
# difference of a factor 1 - 1e-8 per iteration.)
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.002))

# detectron2's WarmupMultiStepLR: linear warm-up over 1000 iterations from 0.001.
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1)
]

# Upstream: 16 images per iteration (the GPU count is not stated); the configs use 2 per GPU,
# so --auto-scale-lr rescales the lr from 8 GPUs.
auto_scale_lr = dict(enable=False, base_batch_size=16)
