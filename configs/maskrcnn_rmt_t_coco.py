# Mask R-CNN + FPN, 1x, RMT-T (upstream `maskrcnn_t_1x`). See maskrcnn_rmt_s_coco.py for usage.
_base_ = './maskrcnn_rmt_s_coco.py'

model = dict(
    backbone=dict(
        arch='tiny',
        drop_path_rate=0.1,
        init_cfg=dict(checkpoint='checkpoints/rmt_t_in1k.pth')))
