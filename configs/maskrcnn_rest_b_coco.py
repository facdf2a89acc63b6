# Mask R-CNN + FPN, 1x, ResT-B (upstream `mask_rcnn_rest_base_FPN_1x`). Same usage as
# maskrcnn_rest_s_coco.py (convert with --arch rest_base).
_base_ = './maskrcnn_rest_s_coco.py'

model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.2,
        init_cfg=dict(checkpoint='checkpoints/rest_b_in1k.pth')),
    neck=dict(in_channels=[96, 192, 384, 768]))
