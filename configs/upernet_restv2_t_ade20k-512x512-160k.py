# UPerNet, ResTv2-T, ADE20K 512x512, 160k iterations: the authors' mmseg 0.x
# `upernet_restv2_tiny_512_160k_ade20k` recipe on mmseg 1.x.
#
# Pretrained weights: convert the authors' ImageNet checkpoint to the path below, e.g.
#   python tools/convert_imagenet_ckpt.py restv2_tiny_224.pth checkpoints/restv2_t_in1k.pth \
#       --arch restv2_tiny
# or override model.backbone.init_cfg.checkpoint. 8 GPUs x 2 images = 16, the base of
# --auto-scale-lr. Input: RGB with ImageNet mean/std (mmseg's default), as upstream.
_base_ = [
    './_base_/models/upernet.py', './_base_/datasets/ade20k.py', './_base_/seg_runtime.py',
    './_base_/schedules/seg_160k.py'
]

crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        type='ResTV2',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        # Upstream's stem has a plain BatchNorm, fine-tuned per GPU in train mode; the heads
        # use SyncBN (inherited).
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/restv2_t_in1k.pth')),
    decode_head=dict(in_channels=[96, 192, 384, 768], channels=512, num_classes=150),
    auxiliary_head=dict(in_channels=384, channels=256, num_classes=150))

# fp32 AdamW without weight decay on parameters whose name contains 'norm' (block, embedding,
# attention and output LayerNorms; the stem BNs are named stem.proj.N and keep it, as
# upstream); upstream's two other keys match no ResTv2 parameter.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys=dict(norm=dict(decay_mult=0.0))))
# mmcv's poly policy with linear warm-up: 1500 iterations from 1e-6, then power 1.0 to 0.
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False, begin=1500, end=160000)
]
