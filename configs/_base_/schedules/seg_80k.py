# The 80k-iteration segmentation schedule of mmseg's configs (its `schedule_80k` base): SGD
# (lr 0.01, momentum 0.9, weight decay 5e-4) with poly decay (power 0.9) to 1e-4, validation
# and checkpoints every 8k iterations. The configs replace the optimizer and the policy
# with their recipes'. Its hooks are mmseg's, with strict checkpoint loading and crash-safe
# checkpoints (docs/checkpoints.md).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0005),
    clip_grad=None)
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=80000, by_epoch=False)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=80000, val_interval=8000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='AtomicCheckpointHook', by_epoch=False, interval=8000),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'),
    strict_load=dict(type='StrictLoadHook'))
