# UperNet, RMT-S, ADE20K 512x512, 160k iterations: upstream's `RMT_Uper_s_2x` on mmseg 1.x.
#
# Pretrained weights: convert the ImageNet checkpoint with tools/convert_imagenet_ckpt.py to the
# path below (or override model.backbone.init_cfg.checkpoint). 8 GPUs x 2 images = 16, the base
# of --auto-scale-lr. Upstream's S/B configs divide by zero as shipped; the warmup (1500 iters)
# and evaluation interval (8000) are the values its L config shows.
_base_ = [
    './_base_/models/upernet.py', './_base_/datasets/ade20k.py', './_base_/seg_runtime.py',
    './_base_/schedules/seg_160k.py'
]

crop_size = (512, 512)
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        type='RMT',
        arch='small',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.15,
        # SyncBN in the stem and patch merging, kept in train mode (upstream's norm_eval was a
        # no-op for SyncBN).
        norm_cfg=norm_cfg,
        norm_eval=False,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/rmt_s_in1k.pth')),
    decode_head=dict(in_channels=[64, 128, 256, 512], channels=512, num_classes=150),
    auxiliary_head=dict(in_channels=256, channels=256, num_classes=150))

# fp16 with a static loss scale of 512, as upstream's Fp16OptimizerHook. No weight decay on
# parameters whose name contains 'norm' (block/output LayerNorms, patch-merging BNs); upstream's
# other two keys (absolute_pos_embed, relative_position_bias_table) match no RMT parameter.
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    loss_scale=512.0,
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys=dict(norm=dict(decay_mult=0.0))))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False, begin=1500, end=160000)
]
train_cfg = dict(val_interval=8000)
default_hooks = dict(checkpoint=dict(interval=8000, save_best='mIoU'))
