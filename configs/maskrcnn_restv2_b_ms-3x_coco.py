# Mask R-CNN + FPN, 3x multi-scale, ResTv2-B (upstream `mask_rcnn_restv2_base_FPN_3x`). Same
# usage as maskrcnn_restv2_t_ms-3x_coco.py (convert with --arch restv2_base).
_base_ = './maskrcnn_restv2_t_ms-3x_coco.py'

model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.3,
        init_cfg=dict(checkpoint='checkpoints/restv2_b_in1k.pth')))
