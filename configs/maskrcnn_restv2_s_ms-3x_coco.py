# Mask R-CNN + FPN, 3x multi-scale, ResTv2-S (upstream `mask_rcnn_restv2_small_FPN_3x`). Same
# usage as maskrcnn_restv2_t_ms-3x_coco.py (convert with --arch restv2_small).
_base_ = './maskrcnn_restv2_t_ms-3x_coco.py'

model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.2,
        init_cfg=dict(checkpoint='checkpoints/restv2_s_in1k.pth')))
