# Mask R-CNN + FPN, 3x multi-scale, RMT-L (upstream `maskrcnn_l_3x`, no result reported).
# Upstream trained it with 1 image/GPU (1 worker): with our 8-GPU assumption, a batch of 8.
_base_ = './maskrcnn_rmt_s_ms-3x_coco.py'

model = dict(
    backbone=dict(
        arch='large',
        drop_path_rate=0.5,
        init_cfg=dict(checkpoint='checkpoints/rmt_l_in1k.pth')),
    neck=dict(in_channels=[112, 224, 448, 640]))

train_dataloader = dict(batch_size=1, num_workers=1)
optim_wrapper = dict(optimizer=dict(lr=2e-4))
auto_scale_lr = dict(base_batch_size=8)
