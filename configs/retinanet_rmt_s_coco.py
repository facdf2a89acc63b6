# RetinaNet + FPN, 1x schedule, RMT-S backbone: upstream's `retinanet_s_1x` recipe on mmdet 3.x.
#
# Pretrained weights: convert the ImageNet checkpoint with tools/convert_imagenet_ckpt.py and
# point at it, e.g. `--cfg-options model.backbone.init_cfg.checkpoint=checkpoints/rmt_s_in1k.pth`.
# Batch: 2 images/GPU; `--auto-scale-lr` assumes 8 GPUs (16 images), a count upstream did not state.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py', './_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py', './_base_/det_runtime.py',
    'mmdet::retinanet/retinanet_tta.py'
]
# The dataset and runtime bases add the plugin import, COCO file checks, strict loading and
# crash-safe checkpoints (docs/checkpoints.md).

model = dict(
    backbone=dict(
        _delete_=True,
        type='RMT',
        arch='small',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.15,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/rmt_s_in1k.pth')),
    # As upstream, all four stages feed an FPN that starts at stage 2 (start_level=1).
    neck=dict(in_channels=[64, 128, 256, 512], start_level=1, add_extra_convs='on_input'))

# Upstream: AdamW with weight decay 1e-4 on every parameter, static fp16 loss scale 512.
optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale=512.0,
    optimizer=dict(_delete_=True, type='AdamW', lr=4e-4, betas=(0.9, 0.999), weight_decay=1e-4))

# Stage 1 and its output norm get no gradient (start_level=1), so DDP must allow unused params.
find_unused_parameters = True
