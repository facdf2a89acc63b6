#!/usr/bin/env python
"""Run a detector on one image and save it with boxes, masks and labels drawn by mmdet's
visualizer. The checkpoint (a path or an http(s) URL) must fit the config's model exactly."""
import warnings

warnings.filterwarnings('ignore', 'pkg_resources is deprecated', UserWarning)  # setuptools noise

import argparse
import os.path as osp
import sys

import mmcv
from mmengine.config import DictAction

import rmt_mm.plugin  # noqa: E402,F401  (registration, safe checkpoint loading)
from rmt_mm.checkpoints.model import load_model_checkpoint
from rmt_mm.checkpoints.reading import check_checkpoint_file
from rmt_mm.cli import add_debug_arg, add_loading_args, load_config, run_cli
from rmt_mm.datasets.images import image_file_problem
from rmt_mm.errors import ConfigError, DataError


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('image', help='image file')
    parser.add_argument('config', help='detection config file')
    parser.add_argument('checkpoint', help='trained checkpoint (file or http(s) URL)')
    parser.add_argument('--out', default='result.png', help='where to write the drawing')
    parser.add_argument('--device', default='cpu', help='e.g. cpu, cuda:0')
    parser.add_argument('--score-thr', type=float, default=0.3, help='hide lower scores')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries')
    add_loading_args(parser)
    add_debug_arg(parser)
    return parser.parse_args(argv)


def dataset_meta(checkpoint: dict) -> dict:
    """Class names (and palette) as mmdet's ``init_detector`` reads them from a checkpoint."""
    meta = checkpoint.get('meta', {})
    if 'dataset_meta' in meta:
        return {k.lower(): v for k, v in meta['dataset_meta'].items()}
    if 'CLASSES' in meta:  # mmdet 2.x
        return {'classes': meta['CLASSES']}
    return {}


def demo(args: argparse.Namespace) -> int:
    missing = [p for p in (args.image, args.config) if not osp.isfile(p)]
    if not args.checkpoint.startswith(('http://', 'https://')) \
            and not osp.isfile(args.checkpoint):
        missing.append(args.checkpoint)
    if missing:
        raise ConfigError(f'file not found: {", ".join(missing)}')
    problem = image_file_problem(args.image)
    if problem:
        raise DataError(f'{args.image}: {problem}')
    check_checkpoint_file(args.checkpoint)
    cfg, scope = load_config(args.config, args.cfg_options)
    if scope != 'mmdet':
        raise ConfigError(f'{args.config}: a {scope} config; tools/demo.py draws detections')
    from mmdet.apis import inference_detector, init_detector
    from mmdet.registry import VISUALIZERS

    # Built without weights (init_cfg dropped: the checkpoint holds them all), then loaded
    # strictly: mmdet's init_detector would load a checkpoint that does not fit in part.
    cfg.model.backbone.init_cfg = None
    with warnings.catch_warnings(record=True) as caught:
        model = init_detector(cfg, None, device=args.device)
    for warning in caught:  # all but its note that it uses COCO classes: they come next
        if 'checkpoint is None' not in str(warning.message):
            warnings.showwarning(warning.message, warning.category, warning.filename,
                                 warning.lineno)
    checkpoint = load_model_checkpoint(model, args.checkpoint, args.partial_load,
                                       args.allow_nonfinite)
    model.dataset_meta = {**model.dataset_meta, **dataset_meta(checkpoint)}
    result = inference_detector(model, args.image)
    visualizer = VISUALIZERS.build(model.cfg.visualizer)
    visualizer.dataset_meta = model.dataset_meta
    image = mmcv.imread(args.image, channel_order='rgb')
    visualizer.add_datasample('result', image, data_sample=result, draw_gt=False,
                              pred_score_thr=args.score_thr, out_file=args.out)
    kept = int((result.pred_instances.scores >= args.score_thr).sum())
    print(f'{kept} detections with score >= {args.score_thr} drawn to {args.out}')
    return 0


def main(argv=None) -> int:
    return run_cli(demo, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
