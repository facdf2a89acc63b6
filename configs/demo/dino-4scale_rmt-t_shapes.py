# CPU demo: DINO 4-scale with RMT-T (../dino-4scale_rmt-t_8xb2-12e_coco.py) trained from scratch
# on the generated shapes set (tools/make_shapes_coco.py) in minutes on two CPU cores; `make
# demo-dino` runs it all. Changed for a CPU run: plain BN, no ImageNet weights, images of at
# most 192 px, 100 queries (the encoder of a 160 px image has fewer than 900 tokens to pick
# from), a short iteration-based schedule with a higher lr, the backbone at the full lr (it
# starts from scratch) and slimmer transformers (3 encoder and 3 decoder layers, 1024-d FFNs).
_base_ = '../dino-4scale_rmt-t_8xb2-12e_coco.py'

data_root = 'data/shapes_coco/'
metainfo = dict(classes=('circle', 'square', 'triangle'))
img_scale = (192, 192)
max_iters = 300
ffn = dict(feedforward_channels=1024)

model = dict(
    num_queries=100,
    backbone=dict(norm_cfg=dict(type='BN', requires_grad=True), init_cfg=None),
    encoder=dict(num_layers=3, layer_cfg=dict(ffn_cfg=ffn)),
    decoder=dict(num_layers=3, layer_cfg=dict(ffn_cfg=ffn)),
    bbox_head=dict(num_classes=len(metainfo['classes'])),
    dn_cfg=dict(group_cfg=dict(num_dn_queries=20)),
    test_cfg=dict(max_per_img=20))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
dataset = dict(data_root=data_root, metainfo=metainfo)
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(**dataset, ann_file='annotations/train.json', data_prefix=dict(img='train/'),
                 filter_cfg=dict(filter_empty_gt=False, min_size=0), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(**dataset, ann_file='annotations/val.json', data_prefix=dict(img='val/'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/val.json')
test_evaluator = val_evaluator

train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[int(max_iters * 0.8)], gamma=0.1),
]
optim_wrapper = dict(optimizer=dict(lr=4e-4), clip_grad=dict(max_norm=1.0),
                     paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=1.0)}))

default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
custom_hooks = [dict(type='RNGStateHook')]
randomness = dict(seed=0)
