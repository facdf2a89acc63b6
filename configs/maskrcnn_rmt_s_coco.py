# Mask R-CNN + FPN, 1x schedule, RMT-S backbone: upstream's `maskrcnn_s_1x` recipe on mmdet 3.x.
#
# Pretrained weights: convert the ImageNet checkpoint with tools/convert_imagenet_ckpt.py and
# point at it, e.g. `--cfg-options model.backbone.init_cfg.checkpoint=checkpoints/rmt_s_in1k.pth`.
# Batch: 2 images/GPU. Upstream did not state its GPU count; we assume 8 GPUs (16 images), the
# base of `--auto-scale-lr`.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'

# Registers this package's modules for any tool that reads the config: mmdet's/mmseg's own
# tools/train.py and test.py, `mim train`, the Inferencers.
custom_imports = dict(imports=['rmt_mm.plugin'], allow_failed_imports=False)

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

# COCO files checked when loaded; checkpoints loaded strictly, saved crash-safely (see
# docs/checkpoints.md).
train_dataloader = dict(batch_size=2, num_workers=2,
                        dataset=dict(type='CheckedCocoDataset'))
val_dataloader = test_dataloader = dict(dataset=dict(type='CheckedCocoDataset'))
default_hooks = dict(
    strict_load=dict(type='StrictLoadHook'), checkpoint=dict(type='AtomicCheckpointHook'))

# AdamW without weight decay on parameters whose name contains 'norm': the block LayerNorms,
# output norms and patch-merging BNs (not the stem BNs, named patch_embed.proj.N), as upstream.
optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(_delete_=True, type='AdamW', lr=4e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys=dict(norm=dict(decay_mult=0.0))))

auto_scale_lr = dict(enable=False, base_batch_size=16)
