#!/usr/bin/env python
"""Save a config's model as ``tools/train.py`` would start it (same seed, ``init_cfg`` loaded)
so that ``tools/test.py`` can measure the untrained baseline a training run improves on."""
import warnings

warnings.filterwarnings('ignore', 'pkg_resources is deprecated', UserWarning)  # setuptools noise

import argparse
import sys

from mmengine.config import DictAction
from mmengine.runner import Runner, weights_to_cpu

import rmt_mm.plugin  # noqa: E402,F401  (registration, safe checkpoint loading)
from rmt_mm.checkpoints.atomic import atomic_save
from rmt_mm.cli import (
    add_debug_arg,
    check_channels,
    check_paths,
    load_config,
    quiet_known_noise,
    run_cli,
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='train config file path')
    parser.add_argument('out', help='checkpoint to write')
    parser.add_argument('--work-dir', help='the dir for the runner log')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries')
    add_debug_arg(parser)
    return parser.parse_args(argv)


def init_checkpoint(args: argparse.Namespace) -> int:
    cfg, _ = load_config(args.config, args.cfg_options, args.work_dir)
    check_channels(cfg)
    check_paths(cfg, ())
    runner = Runner.from_cfg(cfg)  # seeds exactly as a training run does before building
    quiet_known_noise(runner.logger)
    runner.model.init_weights()
    atomic_save(dict(state_dict=weights_to_cpu(runner.model.state_dict()),
                     meta=dict(iter=0, seed=runner.seed)), args.out)
    print(f'initial weights written to {args.out}')
    return 0


def main(argv=None) -> int:
    return run_cli(init_checkpoint, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
