# DINO 4-scale, 12 epochs, RMT-B: dino-4scale_rmt-s_8xb2-12e_coco.py (mmdet's
# `dino/dino-4scale_r50_8xb2-12e_coco.py`) with another backbone size.
_base_ = './dino-4scale_rmt-s_8xb2-12e_coco.py'

model = dict(
    backbone=dict(arch='base', drop_path_rate=0.4,
                  init_cfg=dict(checkpoint='checkpoints/rmt_b_in1k.pth')),
    neck=dict(in_channels=[160, 320, 512]))
