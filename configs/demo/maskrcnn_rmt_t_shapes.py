# CPU demo: the RMT-T Mask R-CNN recipe (../maskrcnn_rmt_t_coco.py) shrunk to train from scratch
# on the generated shapes set (tools/make_shapes_coco.py) in minutes on two CPU cores. Only what
# a CPU run needs changes: plain BN and fp32, no ImageNet weights, images of at most 224 px, a
# short iteration-based schedule with a higher lr, and fewer proposals/RoIs per image.
# Point data_root/ann_file at any COCO-format instance set (and set classes) to train on it.
_base_ = '../maskrcnn_rmt_t_coco.py'

data_root = 'data/shapes_coco/'
metainfo = dict(classes=('circle', 'square', 'triangle'))
num_classes = len(metainfo['classes'])
img_scale = (224, 224)
max_iters = 300

# Slimmer heads (128-channel FPN, 512-d box head, 2-conv mask head) and fewer RoIs: on a CPU
# the detector heads, not the backbone, dominate a step at this image size.
neck_channels = 128
model = dict(
    backbone=dict(norm_cfg=dict(type='BN', requires_grad=True), init_cfg=None),
    neck=dict(out_channels=neck_channels),
    rpn_head=dict(in_channels=neck_channels, feat_channels=neck_channels),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=neck_channels),
        bbox_head=dict(in_channels=neck_channels, fc_out_channels=512, num_classes=num_classes),
        mask_roi_extractor=dict(out_channels=neck_channels),
        mask_head=dict(num_convs=2, in_channels=neck_channels, conv_out_channels=neck_channels,
                       num_classes=num_classes)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=300), rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=100), rcnn=dict(max_per_img=20)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/train.json',
        data_prefix=dict(img='train/'),
        # Keep images without objects: they are negatives worth training on.
        filter_cfg=dict(filter_empty_gt=False, min_size=0),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/val.json',
        data_prefix=dict(img='val/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/val.json')
test_evaluator = val_evaluator

train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[int(max_iters * 0.75), int(max_iters * 0.9)], gamma=0.1),
]
optim_wrapper = dict(type='OptimWrapper', _delete_=True,
                     optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
                     paramwise_cfg=dict(custom_keys=dict(norm=dict(decay_mult=0.0))),
                     clip_grad=dict(max_norm=10.0))

default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
# Exact `--resume`: checkpoints also carry torch's RNG state (RoI sampling draws from it).
custom_hooks = [dict(type='RNGStateHook')]
randomness = dict(seed=0)
