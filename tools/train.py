#!/usr/bin/env python
"""Train a detector (mmdet config) or segmentor (mmseg config) with an RMT/ResT backbone.

Same flags and behaviour as mmdet 3.3's and mmseg 1.2's ``tools/train.py``; the config's
``default_scope`` picks the codebase, and ``rmt_mm`` is registered without ``custom_imports``.
Checkpoints load strictly and are written crash-safely (see docs/checkpoints.md); errors are one
line unless ``--debug``.
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
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by actual / auto_scale_lr.base_batch_size')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from this checkpoint, or from the newest readable one in '
                        'the work dir when no path is given')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, e.g. train_cfg.max_iters=100')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    add_loading_args(parser)
    add_debug_arg(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def train(args: argparse.Namespace) -> int:
    cfg, _ = load_config(args.config, args.cfg_options, args.work_dir)
    cfg.launcher = args.launcher
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise ConfigError('--auto-scale-lr needs auto_scale_lr.base_batch_size in the config')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    if args.resume and args.partial_load:
        raise ConfigError('--partial-load applies to load_from, not to --resume (a resumed run '
                          'gets back its whole state)')
    add_safety_hooks(cfg, args.partial_load, args.allow_nonfinite)
    check_channels(cfg)
    check_paths(cfg, ('train', 'val'))
    setup_cpu_distributed(cfg)
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    quiet_known_noise(runner.logger)
    runner.train()
    return 0


def main(argv=None) -> int:
    return run_cli(train, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
