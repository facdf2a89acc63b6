# Semantic FPN, RMT-L, ADE20K 512x512, 80k (upstream `RMT_FPN_l_1x`).
_base_ = './fpn_rmt_s_ade20k-512x512-80k.py'

model = dict(
    backbone=dict(
        arch='large',
        drop_path_rate=0.5,
        init_cfg=dict(checkpoint='checkpoints/rmt_l_in1k.pth')),
    neck=dict(in_channels=[112, 224, 448, 640]))
