# Semantic FPN, RMT-B, ADE20K 512x512, 80k (upstream `RMT_FPN_m_1x`; RMT-B is "M" upstream).
_base_ = './fpn_rmt_s_ade20k-512x512-80k.py'

model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.4,
        init_cfg=dict(checkpoint='checkpoints/rmt_b_in1k.pth')),
    neck=dict(in_channels=[80, 160, 320, 512]))
