# Semantic FPN, RMT-S, ADE20K 512x512, 80k iterations: upstream's `RMT_FPN_s_1x` on mmseg 1.x.
#
# Pretrained weights: convert the ImageNet checkpoint with tools/convert_imagenet_ckpt.py to the
# path below (or override model.backbone.init_cfg.checkpoint). 8 GPUs x 2 images = 16, the base
# of --auto-scale-lr. No fp16 and no warmup, as upstream.
_base_ = [
    './_base_/models/fpn.py', './_base_/datasets/ade20k.py', './_base_/seg_runtime.py',
    './_base_/schedules/seg_80k.py'
]

crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        type='RMT',
        arch='small',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.15,
        # SyncBN in the stem and patch merging, kept in train mode (upstream's norm_eval was a
        # no-op for SyncBN).
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/rmt_s_in1k.pth')),
    neck=dict(in_channels=[64, 128, 256, 512]),
    decode_head=dict(num_classes=150))

# AdamW with torch's default betas and no parameter-wise settings, as upstream.
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, weight_decay=1e-4), clip_grad=None)
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-6, power=0.9, by_epoch=False, begin=0, end=80000)
]
train_cfg = dict(val_interval=4000)
default_hooks = dict(checkpoint=dict(interval=4000))
