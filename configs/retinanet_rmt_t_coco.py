# RetinaNet + FPN, 1x, RMT-T (upstream `retinanet_t_1x`). See retinanet_rmt_s_coco.py for usage.
_base_ = './retinanet_rmt_s_coco.py'

model = dict(
    backbone=dict(
        arch='tiny',
        drop_path_rate=0.1,
        init_cfg=dict(checkpoint='checkpoints/rmt_t_in1k.pth')))
