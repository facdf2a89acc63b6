#!/usr/bin/env python
"""Export a whole detector or segmentor (config + checkpoint) to ONNX through mmdeploy with a
deploy config of configs/deploy/, with the mmdeploy SDK's model folder beside it (deploy.json,
pipeline.json, detail.json), optionally checking it: ``--verify`` runs the file with
onnxruntime through mmdeploy's wrapper and the PyTorch model on the same images and prints,
per image, the box IoU / box, score and mask differences (detection) or the logit difference
and the share of equal predictions (segmentation).

    python tools/deploy.py configs/deploy/instance-seg_onnxruntime_dynamic.py \
        configs/demo/maskrcnn_rmt_t_shapes.py work_dirs/demo/iter_300.pth \
        data/shapes_coco/val/000001.png --work-dir work_dirs/deploy/maskrcnn \
        --verify data/shapes_coco/val/000002.png data/shapes_coco/val/000003.png

Needs mmdeploy 1.3.1, which runs on the 2024 OpenMMLab stack (torch 2.1, mmcv 2.1.0):
make env STACK=openmmlab. The tracer's warnings and mmdeploy's log appear with --verbose.
"""
import warnings

warnings.filterwarnings('ignore', 'pkg_resources is deprecated', UserWarning)  # setuptools noise

import argparse
import os
import os.path as osp
import sys
import time

from mmengine.config import DictAction

from rmt_mm.cli import add_debug_arg, load_config, run_cli
from rmt_mm.errors import ConfigError, DataError


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('deploy_config', help='a deploy config (configs/deploy/*.py)')
    parser.add_argument('config', help='the model config (detection or segmentation)')
    parser.add_argument('checkpoint', help='the model weights (loaded strictly)')
    parser.add_argument('image', help='the image the export is traced on')
    parser.add_argument('--work-dir', required=True,
                        help='where end2end.onnx and the SDK files are written')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='the input size (images are resized to it, no aspect kept); '
                        'required by static deploy configs')
    parser.add_argument('--verify', nargs='*', metavar='IMAGE',
                        help='compare onnxruntime (mmdeploy wrapper) with PyTorch on these '
                        'images (default: the traced image); exit 1 on a mismatch')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detections compared: PyTorch scores at least this')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override model config keys (key=value)')
    parser.add_argument('--sdk-boxes-only', action='store_true',
                        help="Mask R-CNN: the SDK folder's postprocessing gives boxes only "
                        "(mmdeploy-runtime 1.3.1's mask postprocessing is unreliable on CPU, "
                        'open-mmlab/mmdeploy#2889)')
    parser.add_argument('--verbose', action='store_true',
                        help="show the tracer's warnings and mmdeploy's log")
    add_debug_arg(parser)
    return parser.parse_args(argv)


def deploy(args: argparse.Namespace) -> int:
    from rmt_mm import deploy as dep
    dep.require_mmdeploy()
    import rmt_mm.plugin  # noqa: F401  (registers the backbones)
    from rmt_mm.checkpoints.reading import check_checkpoint_file
    from rmt_mm.datasets.images import image_file_problem
    from rmt_mm.deploy.sdk import write_sdk_folder

    for image in [args.image] + list(args.verify or []):
        problem = image_file_problem(image)
        if problem:
            raise DataError(f'{image}: {problem}')
    check_checkpoint_file(args.checkpoint)
    deploy_cfg = dep.load_deploy_config(args.deploy_config)
    model_cfg, scope = load_config(args.config, args.cfg_options)
    dep.check_pair(deploy_cfg, model_cfg, scope, args.deploy_config, args.config)
    deploy_cfg, model_cfg = dep.prepare_configs(deploy_cfg, model_cfg, args.shape,
                                                args.deploy_config)
    with dep.quiet(args.verbose):
        model = dep.build_torch_model(deploy_cfg, model_cfg, args.checkpoint)
        inputs = dep.traced_input(deploy_cfg, model_cfg, args.image, model)
        dep.check_size(model, inputs)
        h, w = (int(v) for v in inputs.shape[-2:])
        os.makedirs(args.work_dir, exist_ok=True)
        start = time.perf_counter()
        onnx_file = dep.export(deploy_cfg, model_cfg, args.checkpoint, args.image,
                               args.work_dir)
        took = time.perf_counter() - start
        try:
            sdk = write_sdk_folder(deploy_cfg, model_cfg, args.work_dir, args.checkpoint,
                                   boxes_only=args.sdk_boxes_only)
        except ConfigError as err:  # the ONNX file stands without the SDK's folder
            sdk = dict(problem=str(err))
    sizes = 'any size' if dep.is_dynamic(deploy_cfg) else 'its size only'
    print(f'{onnx_file}: traced at {h}x{w}, takes {sizes} (opset '
          f'{deploy_cfg.onnx_config.opset_version}, {osp.getsize(onnx_file)} bytes, '
          f'{took:.1f} s)')
    if 'problem' in sdk:
        print(f'{args.work_dir}: no mmdeploy SDK model folder: {sdk["problem"]}')
    else:
        print(f'{args.work_dir}: the mmdeploy SDK model folder (mmdeploy_runtime.{sdk["task"]}, '
              f'{sdk["postprocess"]})')
    if args.verify is None:
        return 0
    with dep.quiet(args.verbose):
        results = dep.compare(deploy_cfg, model_cfg, model, onnx_file,
                              args.verify or [args.image], score_thr=args.score_thr)
    for result in results:
        print(result.line())
    return 1 if any(r.problems for r in results) else 0


def main(argv=None) -> int:
    return run_cli(deploy, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
