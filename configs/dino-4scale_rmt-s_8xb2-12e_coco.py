# DINO (4 scales, 12 epochs) with an RMT-S backbone, following mmdet's
# `dino/dino-4scale_r50_8xb2-12e_coco.py`: the same detector, augmentation, optimizer and
# schedule; the backbone is RMT-S with the repository's detection settings (see
# maskrcnn_rmt_s_coco.py), its stages 2-4 (strides 8/16/32) feeding the ChannelMapper, which adds
# the fourth level (stride 64).
#
# Pretrained weights: convert the ImageNet checkpoint with tools/convert_imagenet_ckpt.py to
# checkpoints/rmt_s_in1k.pth or override model.backbone.init_cfg.checkpoint.
# Batch: 2 images/GPU x 8 GPUs (`--auto-scale-lr` rescales the lr for another GPU count).
#
# Small inputs: the two-stage encoder picks `num_queries` (900) of its tokens, about H*W/48 of
# them over the four levels, so images under ~210x210 px need a smaller model.num_queries
# (the CPU demo, configs/demo/dino-4scale_rmt-t_shapes.py, uses 100).
_base_ = ['./_base_/datasets/coco_detection.py', './_base_/det_runtime.py']

model = dict(
    type='DINO',
    num_queries=900,
    with_box_refine=True,
    as_two_stage=True,
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=1),
    backbone=dict(
        type='RMT',
        arch='small',
        out_indices=(1, 2, 3),
        drop_path_rate=0.15,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/rmt_s_in1k.pth')),
    neck=dict(
        type='ChannelMapper',
        in_channels=[128, 256, 512],
        kernel_size=1,
        out_channels=256,
        act_cfg=None,
        norm_cfg=dict(type='GN', num_groups=32),
        num_outs=4),
    encoder=dict(
        num_layers=6,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=256, num_levels=4, dropout=0.0),
            ffn_cfg=dict(embed_dims=256, feedforward_channels=2048, ffn_drop=0.0))),
    decoder=dict(
        num_layers=6,
        return_intermediate=True,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=256, num_heads=8, dropout=0.0),
            cross_attn_cfg=dict(embed_dims=256, num_levels=4, dropout=0.0),
            ffn_cfg=dict(embed_dims=256, feedforward_channels=2048, ffn_drop=0.0)),
        post_norm_cfg=None),
    positional_encoding=dict(num_feats=128, normalize=True, offset=0.0, temperature=20),
    bbox_head=dict(
        type='DINOHead',
        num_classes=80,
        sync_cls_avg_factor=True,
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=5.0),
        loss_iou=dict(type='GIoULoss', loss_weight=2.0)),
    dn_cfg=dict(
        label_noise_scale=0.5,
        box_noise_scale=1.0,
        group_cfg=dict(dynamic=True, num_groups=None, num_dn_queries=100)),
    train_cfg=dict(
        assigner=dict(
            type='HungarianAssigner',
            match_costs=[
                dict(type='FocalLossCost', weight=2.0),
                dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
                dict(type='IoUCost', iou_mode='giou', weight=2.0)
            ])),
    test_cfg=dict(max_per_img=300))

# DETR's augmentation: short side 480-800 (step 32), or resize to 400/500/600, crop 384-600 and
# resize to 480-800.
short_sides = [(s, 1333) for s in range(480, 801, 32)]
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[
            [dict(type='RandomChoiceResize', scales=short_sides, keep_ratio=True)],
            [
                dict(type='RandomChoiceResize', scales=[(400, 4200), (500, 4200), (600, 4200)],
                     keep_ratio=True),
                dict(type='RandomCrop', crop_type='absolute_range', crop_size=(384, 600),
                     allow_negative_crop=True),
                dict(type='RandomChoiceResize', scales=short_sides, keep_ratio=True)
            ]
        ]),
    dict(type='PackDetInputs')
]
train_dataloader = dict(
    dataset=dict(filter_cfg=dict(filter_empty_gt=False), pipeline=train_pipeline))

# mmdet's DINO optimizer: AdamW, weight decay 1e-4 everywhere, the backbone at 0.1 x lr,
# gradient norm clipped to 0.1.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=1e-4),
    clip_grad=dict(max_norm=0.1, norm_type=2),
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1)}))

max_epochs = 12
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[11], gamma=0.1)
]
auto_scale_lr = dict(enable=False, base_batch_size=16)
# RMT builds an output norm for every stage (checkpoints keep one layout); stage 1's gets no
# gradient here, so DDP must allow unused parameters.
find_unused_parameters = True
