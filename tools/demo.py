#!/usr/bin/env python
"""Run a detector on one image and save it with boxes, masks and labels drawn by mmdet's
visualizer."""
import argparse
import os.path as osp
import sys

import mmcv
from mmengine.config import DictAction

import rmt_mm  # noqa: F401  (safe checkpoint loading + backbone registration)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('image', help='image file')
    parser.add_argument('config', help='detection config file')
    parser.add_argument('checkpoint', help='trained checkpoint')
    parser.add_argument('--out', default='result.png', help='where to write the drawing')
    parser.add_argument('--device', default='cpu', help='e.g. cpu, cuda:0')
    parser.add_argument('--score-thr', type=float, default=0.3, help='hide lower scores')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    missing = [p for p in (args.image, args.config, args.checkpoint) if not osp.isfile(p)]
    if missing:
        print(f'error: file not found: {", ".join(missing)}', file=sys.stderr)
        return 2
    from mmdet.apis import inference_detector, init_detector
    from mmdet.registry import VISUALIZERS

    # init_detector drops the backbone's ImageNet init_cfg: the checkpoint holds all weights.
    model = init_detector(args.config, args.checkpoint, device=args.device,
                          cfg_options=args.cfg_options)
    result = inference_detector(model, args.image)
    visualizer = VISUALIZERS.build(model.cfg.visualizer)
    visualizer.dataset_meta = model.dataset_meta
    image = mmcv.imread(args.image, channel_order='rgb')
    visualizer.add_datasample('result', image, data_sample=result, draw_gt=False,
                              pred_score_thr=args.score_thr, out_file=args.out)
    kept = int((result.pred_instances.scores >= args.score_thr).sum())
    print(f'{kept} detections with score >= {args.score_thr} drawn to {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
