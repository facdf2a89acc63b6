#!/usr/bin/env python
"""Save a config's model as ``tools/train.py`` would start it (same seed, ``init_cfg`` loaded)
so that ``tools/test.py`` can measure the untrained baseline a training run improves on."""
import argparse
import sys

from mmengine.config import DictAction
from mmengine.runner import Runner, save_checkpoint, weights_to_cpu

import rmt_mm  # noqa: F401  (safe checkpoint loading + backbone registration)
from rmt_mm.launch import ConfigError, check_paths, load_config


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='train config file path')
    parser.add_argument('out', help='checkpoint to write')
    parser.add_argument('--work-dir', help='the dir for the runner log')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        cfg, _ = load_config(args.config, args.cfg_options, args.work_dir)
        check_paths(cfg, ())
    except ConfigError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    runner = Runner.from_cfg(cfg)  # seeds exactly as a training run does before building
    runner.model.init_weights()
    save_checkpoint(dict(state_dict=weights_to_cpu(runner.model.state_dict()),
                         meta=dict(iter=0, seed=runner.seed)), args.out)
    print(f'initial weights written to {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
