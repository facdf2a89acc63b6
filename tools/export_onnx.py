#!/usr/bin/env python
"""Export a backbone to ONNX: a released arch or a config's ``model.backbone``, optionally
with weights. The file takes any input size unless ``--static``; ``--shape`` is the size it is
traced at (it sets the attention block sizes). ``--verify`` compares onnxruntime with PyTorch.

    python tools/export_onnx.py rmt_s --shape 800 1344 --out rmt_s.onnx \
        --checkpoint rmt_s_in1k.pth --verify 800x1344 512x512 640x480
    python tools/export_onnx.py configs/maskrcnn_rmt_s_coco.py --shape 800 1344 --out rmt_s.onnx \
        --checkpoint work_dirs/maskrcnn_rmt_s_coco/epoch_12.pth --exporter torchscript

Whole detectors and segmentors export through mmdeploy: tools/deploy.py.
"""
import warnings

warnings.filterwarnings('ignore', 'pkg_resources is deprecated', UserWarning)  # setuptools noise

import argparse
import os
import sys
from typing import Tuple

from rmt_mm.checkpoints.backbone import load_backbone_checkpoint
from rmt_mm.checkpoints.convert import parse_arch
from rmt_mm.cli import add_debug_arg, load_config, run_cli
from rmt_mm.errors import ConfigError
from rmt_mm.export import (
    DEFAULT_OPSET,
    EXPORTERS,
    SizeError,
    check_export_args,
    default_exporter,
    export_onnx,
    verify_onnx,
)
from rmt_mm.models import FAMILIES, DenseBackbone


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('model', help="an arch ('s', 'rmt_small', 'restv2_tiny', a JSON dict) "
                        'or a detection/segmentation config (its model.backbone)')
    parser.add_argument('--shape', type=int, nargs=2, required=True, metavar=('H', 'W'),
                        help='the size traced at (and the only one taken with --static)')
    parser.add_argument('--out', required=True, help='the .onnx file to write')
    parser.add_argument('--checkpoint', help='backbone, converted or detector/segmentor '
                        'weights (loaded strictly)')
    parser.add_argument('--exporter', choices=EXPORTERS,
                        help='default: dynamo where torch has it (>= 2.5), else torchscript')
    parser.add_argument('--opset', type=int, help='default: ' + ', '.join(
        f'{opset} ({exporter})' for exporter, opset in DEFAULT_OPSET.items()))
    parser.add_argument('--static', action='store_true',
                        help='fix batch 1 and the --shape size in the file')
    parser.add_argument('--verify', nargs='*', type=parse_size, metavar='HxW',
                        help='run the file with onnxruntime at these sizes (default: --shape) '
                        'and print the max abs error per output')
    add_debug_arg(parser)
    return parser.parse_args(argv)


def parse_size(text: str) -> Tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r} is not HxW (e.g. 800x1344)') from None
    return h, w


def build_backbone(spec: str) -> DenseBackbone:
    if spec.endswith('.py'):
        cfg = dict(load_config(spec)[0].model.backbone)
        cfg.pop('init_cfg', None)
        family = {cls.__name__: cls for cls in FAMILIES.values()}.get(cfg.pop('type'))
        if family is None:
            raise ConfigError(f'{spec}: model.backbone is not one of this package\'s backbones')
        return family(**cfg)
    try:
        cls, arch = parse_arch(spec)
        return cls(arch=arch)
    except ValueError as err:
        raise ConfigError(f'model {spec}: {err}') from None


def export(args: argparse.Namespace) -> int:
    exporter = args.exporter or default_exporter()
    opset = args.opset or DEFAULT_OPSET[exporter]
    try:
        check_export_args(exporter, opset, args.shape)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    model = build_backbone(args.model)
    if args.checkpoint:
        load_backbone_checkpoint(model, args.checkpoint)
    try:
        export_onnx(model, args.shape, args.out, exporter, opset, dynamic=not args.static)
    except SizeError as err:
        raise ConfigError(f'--shape: {err}') from None
    sizes = 'its size only' if args.static else 'any size'
    print(f'{args.out}: {model.describe()}, traced at {args.shape[0]}x{args.shape[1]}, takes '
          f'{sizes} ({exporter} exporter, opset {opset}, {os.path.getsize(args.out)} bytes)')
    if args.verify is not None:
        try:
            errors = verify_onnx(model, args.out, args.verify or [tuple(args.shape)])
        except SizeError as err:
            raise ConfigError(f'--verify: {err}') from None
        for (h, w), per_output in errors.items():
            for name, err in per_output.items():
                print(f'{h}x{w} {name}: max abs error vs PyTorch {err:.2e}')
    return 0


def main(argv=None) -> int:
    return run_cli(export, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
