# ADE20K as in mmseg's base config, with every label map checked against its image and the 150
# classes right after loading (CheckSegLabels, from rmt_mm), and upstream's 2 images per GPU.
# `data_root` may point at any directory in the ADE20K layout: images/{training,validation}/*.jpg
# and annotations/{training,validation}/*.png, 0 = unlabeled (ignored via reduce_zero_label).
_base_ = 'mmseg::_base_/datasets/ade20k.py'

num_classes = 150
crop_size = (512, 512)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),  # reduce_zero_label comes from the dataset (True for ADE20K)
    dict(type='CheckSegLabels', num_classes=num_classes),
    dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    # Labels are loaded after Resize: mIoU is computed at the original resolution.
    dict(type='LoadAnnotations'),
    dict(type='CheckSegLabels', num_classes=num_classes),
    dict(type='PackSegInputs')
]
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale_factor=r, keep_ratio=True)
             for r in (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)],
            [dict(type='RandomFlip', prob=0., direction='horizontal'),
             dict(type='RandomFlip', prob=1., direction='horizontal')],
            [dict(type='LoadAnnotations')],
            [dict(type='CheckSegLabels', num_classes=num_classes)],
            [dict(type='PackSegInputs')],
        ])
]
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
