# UperNet, RMT-L, ADE20K 512x512, 160k (upstream `RMT_Uper_l_2x`).
_base_ = './upernet_rmt_s_ade20k-512x512-160k.py'

model = dict(
    backbone=dict(
        arch='large',
        drop_path_rate=0.5,
        init_cfg=dict(checkpoint='checkpoints/rmt_l_in1k.pth')),
    decode_head=dict(in_channels=[112, 224, 448, 640]),
    auxiliary_head=dict(in_channels=448))
