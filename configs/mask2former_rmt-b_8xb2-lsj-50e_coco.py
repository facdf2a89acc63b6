# Mask2Former COCO instance segmentation, RMT-B: mask2former_rmt-s_8xb2-lsj-50e_coco.py (mmdet's
# `mask2former/mask2former_swin-s-p4-w7-224_8xb2-lsj-50e_coco.py`) with another backbone size.
_base_ = './mask2former_rmt-s_8xb2-lsj-50e_coco.py'

model = dict(
    backbone=dict(arch='base', drop_path_rate=0.4,
                  init_cfg=dict(checkpoint='checkpoints/rmt_b_in1k.pth')),
    panoptic_head=dict(in_channels=[80, 160, 320, 512]))
