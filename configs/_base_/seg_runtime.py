# The runtime of the repository's segmentation configs: mmseg's `default_runtime` base (mmseg
# scope, NCCL, fork workers with single-threaded OpenCV, the segmentation visualizer,
# iteration-based logging, the test-time-augmentation wrapper that `tools/test.py --tta` uses)
# plus the plugin import. The hooks are in the schedule bases, as in mmseg.
default_scope = 'mmseg'

# Registers this package's modules for any tool that reads the config: mmseg's own
# tools/train.py and test.py, `mim train`, the Inferencers.
custom_imports = dict(imports=['rmt_mm.plugin'], allow_failed_imports=False)
env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
tta_model = dict(type='SegTTAModel')
# 8 GPUs x 2 images, the base of --auto-scale-lr.
auto_scale_lr = dict(enable=False, base_batch_size=16)
