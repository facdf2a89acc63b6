#!/usr/bin/env python
"""Test (and evaluate) a detector or segmentor checkpoint: COCO AP for mmdet configs, mIoU for
mmseg configs.

Same flags and behaviour as mmdet 3.3's and mmseg 1.2's ``tools/test.py``. ``--out`` is a
``.pkl`` file of raw predictions for detection, a directory of label maps for segmentation.
The checkpoint (a path or an http(s) URL) must fit the config's model exactly (see
docs/checkpoints.md); errors are one line unless ``--debug``.
"""
import warnings

warnings.filterwarnings('ignore', 'pkg_resources is deprecated', UserWarning)  # setuptools noise

import argparse
import os
import sys

from mmengine.config import DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

import rmt_mm.plugin  # noqa: E402,F401  (registration, safe checkpoint loading)
from rmt_mm.cli import (
    add_debug_arg,
    add_loading_args,
    add_safety_hooks,
    check_channels,
    check_paths,
    load_config,
    quiet_known_noise,
    run_cli,
    setup_cpu_distributed,
)
from rmt_mm.errors import ConfigError


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file or http(s) URL')
    parser.add_argument('--work-dir', help='the dir to save the evaluation metrics')
    parser.add_argument('--out', help='detection: .pkl of predictions; segmentation: '
                        'directory for predicted label maps')
    parser.add_argument('--show', action='store_true', help='show prediction results')
    parser.add_argument('--show-dir', help='save painted images under work_dir/timestamp/')
    parser.add_argument('--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--tta', action='store_true', help='test-time augmentation (the '
                        "config's tta_model and tta_pipeline)")
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    add_loading_args(parser)
    add_debug_arg(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def enable_visualization(cfg, args) -> None:
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        raise ConfigError('--show/--show-dir need default_hooks.visualization in the config')
    hook.draw = True
    if args.show:
        hook.show = True
        hook.wait_time = args.wait_time
    if args.show_dir:
        if cfg.default_scope == 'mmdet':
            hook.test_out_dir = args.show_dir
        else:
            cfg.visualizer.save_dir = args.show_dir
    hook.interval = 1


def enable_tta(cfg) -> None:
    if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
        raise ConfigError('--tta needs tta_model and tta_pipeline in the config')
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.tta_model.module = cfg.model
    cfg.model = cfg.tta_model


def test(args: argparse.Namespace) -> int:
    cfg, scope = load_config(args.config, args.cfg_options, args.work_dir)
    cfg.launcher = args.launcher
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        enable_visualization(cfg, args)
    if args.tta:
        enable_tta(cfg)
    if args.out is not None:
        if scope == 'mmdet' and not args.out.endswith(('.pkl', '.pickle')):
            raise ConfigError('--out must be a .pkl file for detection')
        if scope == 'mmseg':
            cfg.test_evaluator['output_dir'] = args.out
            cfg.test_evaluator['keep_results'] = True
    add_safety_hooks(cfg, args.partial_load, args.allow_nonfinite)
    check_channels(cfg)
    check_paths(cfg, ('test', ))
    setup_cpu_distributed(cfg)
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    quiet_known_noise(runner.logger)
    if args.out is not None and scope == 'mmdet':
        from mmdet.evaluation import DumpDetResults
        runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))
    runner.test()
    return 0


def main(argv=None) -> int:
    return run_cli(test, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
