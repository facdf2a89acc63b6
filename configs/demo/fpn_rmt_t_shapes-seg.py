# CPU demo: Semantic FPN + RMT-T trained from scratch on the synthetic ADE20K-layout shapes set
# (tools/make_shapes_ade.py data/shapes_ade) with small crops; `make demo-seg` runs it all.
#
# Same model and dataset class as the ADE20K configs; changed: plain BN instead of SyncBN, no
# pretrained weights, 96x96 crops from ~176x240 images, a short schedule with a larger lr
# (training from scratch), no validation during training (tools/test.py evaluates), and 6
# ADE20K classes selected through `metainfo` (mmseg maps the stored ADE20K ids to 0..5 and
# every other id to 255).
_base_ = '../fpn_rmt_t_ade20k-512x512-80k.py'

data_root = 'data/shapes_ade'
classes = ('wall', 'sky', 'tree', 'grass', 'water', 'car')  # rmt_mm.datasets.SHAPES_CLASSES
num_classes = len(classes)
crop_size = (96, 96)
scale = (480, 160)  # resize bounds (long, short side), as ADE20K's (2048, 512) for 512 crops
iters = 240
norm_cfg = dict(type='BN', requires_grad=True)

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(norm_cfg=norm_cfg, init_cfg=None),
    decode_head=dict(num_classes=num_classes, norm_cfg=norm_cfg))

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
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale_factor=r, keep_ratio=True) for r in (0.75, 1.0, 1.25)],
            [dict(type='RandomFlip', prob=0., direction='horizontal'),
             dict(type='RandomFlip', prob=1., direction='horizontal')],
            [dict(type='LoadAnnotations')],
            [dict(type='CheckSegLabels', num_classes=num_classes)],
            [dict(type='PackSegInputs')],
        ])
]
dataset = dict(data_root=data_root, metainfo=dict(classes=classes))
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(**dataset, pipeline=train_pipeline))
test_dataloader = dict(
    num_workers=0, persistent_workers=False, dataset=dict(**dataset, pipeline=test_pipeline))
val_dataloader = val_cfg = val_evaluator = None

optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=30),
    dict(type='PolyLR', eta_min=1e-5, power=0.9, by_epoch=False, begin=30, end=iters)
]
train_cfg = dict(max_iters=iters)
default_hooks = dict(
    logger=dict(interval=20), checkpoint=dict(interval=iters, max_keep_ckpts=1))
env_cfg = dict(cudnn_benchmark=False)
randomness = dict(seed=0)
