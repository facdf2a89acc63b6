# CPU demo: Mask2Former with RMT-T (../mask2former_rmt-t_8xb2-160k_ade20k-512x512.py) trained
# from scratch on the synthetic ADE20K-layout shapes set (tools/make_shapes_ade.py
# data/shapes_ade); `make demo-mask2former` runs it all.
#
# Same data, crops and schedule length as the Semantic FPN demo (fpn_rmt_t_shapes-seg.py).
# Changed for a CPU run: plain BN, no ImageNet weights, a larger lr with the backbone at the full
# lr (it starts from scratch), gradient norm clipped to 1, 6 ADE20K classes through `metainfo`,
# and slimmer transformers (2 pixel-decoder and 3 decoder layers, 1024-d FFNs, 20 queries,
# 96*96 sampled points), no validation during training (tools/test.py evaluates).
_base_ = '../mask2former_rmt-t_8xb2-160k_ade20k-512x512.py'

data_root = 'data/shapes_ade'
classes = ('wall', 'sky', 'tree', 'grass', 'water', 'car')  # rmt_mm.datasets.SHAPES_CLASSES
num_classes = len(classes)
crop_size = (96, 96)
scale = (480, 160)
iters = 240
norm_cfg = dict(type='BN', requires_grad=True)

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(norm_cfg=norm_cfg, init_cfg=None),
    decode_head=dict(
        num_classes=num_classes,
        num_queries=20,
        pixel_decoder=dict(encoder=dict(num_layers=2)),
        transformer_decoder=dict(
            num_layers=3, layer_cfg=dict(ffn_cfg=dict(feedforward_channels=1024))),
        loss_cls=dict(class_weight=[1.0] * num_classes + [0.1]),
        train_cfg=dict(num_points=96 * 96)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='CheckSegLabels', num_classes=num_classes),
    dict(type='RandomResize', scale=scale, ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='CheckSegLabels', num_classes=num_classes),
    dict(type='PackSegInputs')
]
dataset = dict(data_root=data_root, metainfo=dict(classes=classes))
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(**dataset, pipeline=train_pipeline))
test_dataloader = dict(
    num_workers=0, persistent_workers=False, dataset=dict(**dataset, pipeline=test_pipeline))
val_dataloader = val_cfg = val_evaluator = None

optim_wrapper = dict(
    optimizer=dict(lr=4e-4), clip_grad=dict(max_norm=1.0),
    paramwise_cfg=dict(custom_keys=dict(backbone=dict(lr_mult=1.0, decay_mult=1.0))))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=30),
    dict(type='PolyLR', eta_min=1e-5, power=0.9, by_epoch=False, begin=30, end=iters)
]
train_cfg = dict(max_iters=iters, val_interval=iters)
default_hooks = dict(
    logger=dict(interval=20), checkpoint=dict(interval=iters, max_keep_ckpts=1, save_best=None))
env_cfg = dict(cudnn_benchmark=False)
randomness = dict(seed=0)
