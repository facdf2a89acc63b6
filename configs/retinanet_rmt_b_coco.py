# RetinaNet + FPN, 1x, RMT-B (upstream `retinanet_m_1x`). See retinanet_rmt_s_coco.py for usage.
_base_ = './retinanet_rmt_s_coco.py'

model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.4,
        init_cfg=dict(checkpoint='checkpoints/rmt_b_in1k.pth')),
    neck=dict(in_channels=[80, 160, 320, 512]))
