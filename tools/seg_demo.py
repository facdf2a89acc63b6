#!/usr/bin/env python
"""Helpers of ``make demo-seg``: save an untrained model as the baseline checkpoint, and
compare the baseline's test metrics with the trained model's.

    python tools/seg_demo.py init CONFIG OUT.pth     # initialised, untrained weights
    python tools/seg_demo.py compare UNTRAINED_DIR TRAINED_DIR [--overlays DIR]
"""
import warnings

warnings.filterwarnings('ignore', 'pkg_resources is deprecated', UserWarning)  # setuptools noise

import argparse  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import os.path as osp  # noqa: E402
import sys  # noqa: E402
from typing import Optional  # noqa: E402

import torch  # noqa: E402
from mmengine.registry import MODELS  # noqa: E402

import rmt_mm  # noqa: E402,F401  (backbone and transform registration)
from rmt_mm.launch import add_debug_arg, load_config, run_cli  # noqa: E402
from rmt_mm.serialization import atomic_save  # noqa: E402


def save_untrained(config: str, out: str, seed: int = 0) -> None:
    """Build the config's model, initialise it as training would start, save its weights."""
    cfg, _ = load_config(config)
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    model.init_weights()
    atomic_save({'state_dict': model.state_dict(), 'meta': dict(config=config, untrained=True)},
                out)
    print(f'saved untrained {config} weights to {out}')


def test_metrics(work_dir: str) -> dict:
    """Metrics of the latest ``tools/test.py`` run in ``work_dir`` (its ``<ts>/<ts>.json``)."""
    runs = sorted(glob.glob(osp.join(work_dir, '*', '*.json')))
    runs = [p for p in runs if osp.basename(p)[:-5] == osp.basename(osp.dirname(p))]
    if not runs:
        raise FileNotFoundError(f'no test metrics (<timestamp>/<timestamp>.json) in {work_dir}')
    with open(runs[-1]) as f:
        return json.load(f)


def compare(untrained_dir: str, trained_dir: str, overlays: Optional[str] = None) -> None:
    before, after = test_metrics(untrained_dir), test_metrics(trained_dir)
    for key in ('mIoU', 'mAcc', 'aAcc'):
        print(f'{key:>5}: untrained {before[key]:6.2f}  ->  trained {after[key]:6.2f}')
    if overlays:
        pngs = sorted(glob.glob(osp.join(overlays, '**', '*.png'), recursive=True))
        print(f'{len(pngs)} colour overlays (ground truth | prediction) in {overlays}'
              + (f', e.g. {pngs[0]}' if pngs else ''))


def run(args: argparse.Namespace) -> int:
    if args.cmd == 'init':
        save_untrained(args.config, args.out, args.seed)
    else:
        compare(args.untrained_dir, args.trained_dir, args.overlays)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add_debug_arg(parser)
    sub = parser.add_subparsers(dest='cmd', required=True)
    init = sub.add_parser('init', help='save untrained weights')
    init.add_argument('config')
    init.add_argument('out')
    init.add_argument('--seed', type=int, default=0)
    cmp = sub.add_parser('compare', help='print untrained vs trained test metrics')
    cmp.add_argument('untrained_dir')
    cmp.add_argument('trained_dir')
    cmp.add_argument('--overlays', help='directory of overlay PNGs to point at')
    return run_cli(run, parser.parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
