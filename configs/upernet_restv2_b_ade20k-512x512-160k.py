# UPerNet, ResTv2-B, ADE20K 512x512, 160k (upstream `upernet_restv2_base_512_160k_ade20k`),
# with the ResTv2-S optimizer. Same usage as upernet_restv2_t_ade20k-512x512-160k.py (convert
# with --arch restv2_base).
_base_ = './upernet_restv2_s_ade20k-512x512-160k.py'

model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.3,
        init_cfg=dict(checkpoint='checkpoints/restv2_b_in1k.pth')))
