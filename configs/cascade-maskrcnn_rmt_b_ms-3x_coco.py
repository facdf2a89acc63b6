# Cascade Mask R-CNN + FPN, 3x multi-scale, RMT-B (upstream `casrcnn_m_3x`).
_base_ = './cascade-maskrcnn_rmt_s_ms-3x_coco.py'

model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.4,
        init_cfg=dict(checkpoint='checkpoints/rmt_b_in1k.pth')),
    neck=dict(in_channels=[80, 160, 320, 512]))

optim_wrapper = dict(optimizer=dict(lr=2e-4))
