# The runtime of the repository's detection configs: mmdet's `default_runtime` base (mmdet
# scope, hooks, NCCL, fork workers, the detection visualizer, epoch-based logging) plus what
# every detection config here shares: the plugin import, strict checkpoint loading and
# crash-safe checkpoints (docs/checkpoints.md).
default_scope = 'mmdet'

# Registers this package's modules for any tool that reads the config: mmdet's own
# tools/train.py and test.py, `mim train`, the Inferencers.
custom_imports = dict(imports=['rmt_mm.plugin'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='AtomicCheckpointHook', interval=1),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='DetVisualizationHook'),
    strict_load=dict(type='StrictLoadHook'))

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='DetLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=True)
log_level = 'INFO'
load_from = None
resume = False
