# Semantic FPN, RMT-T, ADE20K 512x512, 80k (upstream `RMT_FPN_t_1x`).
_base_ = './fpn_rmt_s_ade20k-512x512-80k.py'

model = dict(
    backbone=dict(
        arch='tiny',
        drop_path_rate=0.1,
        init_cfg=dict(checkpoint='checkpoints/rmt_t_in1k.pth')))
