# RetinaNet + FPN, 1x, RMT-L (upstream `retinanet_l_1x`). See retinanet_rmt_s_coco.py for usage.
_base_ = './retinanet_rmt_s_coco.py'

model = dict(
    backbone=dict(
        arch='large',
        drop_path_rate=0.5,
        init_cfg=dict(checkpoint='checkpoints/rmt_l_in1k.pth')),
    neck=dict(in_channels=[112, 224, 448, 640]))

optim_wrapper = dict(optimizer=dict(lr=2e-4))
