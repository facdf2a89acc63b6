# RetinaNet + FPN, 1x schedule, RMT-S backbone: upstream's `retinanet_s_1x` recipe on mmdet 3.x.
#
# Pretrained weights: convert the ImageNet checkpoint with tools/convert_imagenet_ckpt.py and
# point at it, e.g. `--cfg-options model.backbone.init_cfg.checkpoint=checkpoints/rmt_s_in1k.pth`.
# Batch: 2 images/GPU; `--auto-scale-lr` assumes 8 GPUs (16 images), a count upstream did not state.
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'

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
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/rmt_s_in1k.pth')),
    # As upstream, all four stages feed an FPN that starts at stage 2 (start_level=1).
    neck=dict(in_channels=[64, 128, 256, 512], start_level=1, add_extra_convs='on_input'))

# COCO files checked when loaded; checkpoints loaded strictly, saved crash-safely (see
# docs/checkpoints.md).
train_dataloader = dict(batch_size=2, num_workers=2,
                        dataset=dict(type='CheckedCocoDataset'))
val_dataloader = test_dataloader = dict(dataset=dict(type='CheckedCocoDataset'))
default_hooks = dict(
    strict_load=dict(type='StrictLoadHook'), checkpoint=dict(type='AtomicCheckpointHook'))

# Upstream: AdamW with weight decay 1e-4 on every parameter, static fp16 loss scale 512.
optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale=512.0,
    optimizer=dict(_delete_=True, type='AdamW', lr=4e-4, betas=(0.9, 0.999), weight_decay=1e-4))

# Stage 1 and its output norm get no gradient (start_level=1), so DDP must allow unused params.
find_unused_parameters = True

auto_scale_lr = dict(enable=False, base_batch_size=16)
