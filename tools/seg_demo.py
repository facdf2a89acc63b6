#!/usr/bin/env python
"""Compare two ``tools/test.py`` runs of a segmentor, as ``make demo-seg`` does for the untrained
baseline (written by ``tools/init_checkpoint.py``) and the trained model.

    python tools/seg_demo.py UNTRAINED_DIR TRAINED_DIR [--overlays DIR]
"""
import argparse
import glob
import json
import os.path as osp
import sys
from typing import Optional


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('untrained_dir', help='work dir of the baseline tools/test.py run')
    parser.add_argument('trained_dir', help="work dir of the trained model's run")
    parser.add_argument('--overlays', help='directory of overlay PNGs to point at')
    args = parser.parse_args(argv)
    try:
        compare(args.untrained_dir, args.trained_dir, args.overlays)
    except (OSError, KeyError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
