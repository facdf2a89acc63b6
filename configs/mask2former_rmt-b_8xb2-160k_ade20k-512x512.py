# Mask2Former, ADE20K 512x512, 160k, RMT-B: mask2former_rmt-s_8xb2-160k_ade20k-512x512.py
# (mmseg's `mask2former/mask2former_swin-t_8xb2-160k_ade20k-512x512.py`) with another backbone
# size.
_base_ = './mask2former_rmt-s_8xb2-160k_ade20k-512x512.py'

model = dict(
    backbone=dict(arch='base', drop_path_rate=0.4,
                  init_cfg=dict(checkpoint='checkpoints/rmt_b_in1k.pth')),
    decode_head=dict(in_channels=[80, 160, 320, 512]))
