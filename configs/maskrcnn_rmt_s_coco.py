# Mask R-CNN + FPN, 1x schedule, RMT-S backbone: upstream's `maskrcnn_s_1x` recipe on mmdet 3.x.
#
# Pretrained weights: convert the ImageNet checkpoint with tools/convert_imagenet_ckpt.py and
# point at it, e.g. `--cfg-options model.backbone.init_cfg.checkpoint=checkpoints/rmt_s_in1k.pth`.
# Batch: 2 images/GPU. Upstream did not state its GPU count; we assume 8 GPUs (16 images), the
# base of `--auto-scale-lr`.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py', './_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py', './_base_/det_runtime.py'
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
        # Upstream fine-tunes with SyncBN in the stem/patch merging, kept in train mode.
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/rmt_s_in1k.pth')),
    neck=dict(in_channels=[64, 128, 256, 512]))

# AdamW without weight decay on parameters whose name contains 'norm': the block LayerNorms,
# output norms and patch-merging BNs (not the stem BNs, named patch_embed.proj.N), as upstream.
optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(_delete_=True, type='AdamW', lr=4e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys=dict(norm=dict(decay_mult=0.0))))
