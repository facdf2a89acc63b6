# UperNet, RMT-B, ADE20K 512x512, 160k (upstream `RMT_Uper_m_2x`; RMT-B is "M" upstream).
_base_ = './upernet_rmt_s_ade20k-512x512-160k.py'

model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.4,
        init_cfg=dict(checkpoint='checkpoints/rmt_b_in1k.pth')),
    decode_head=dict(in_channels=[80, 160, 320, 512]),
    auxiliary_head=dict(in_channels=320))
