#!/usr/bin/env python
"""Export a backbone to ONNX: a released arch or a config's ``model.backbone``, optionally
with weights, at one input size; ``--verify`` compares onnxruntime with PyTorch.

    python tools/export_onnx.py rmt_s --shape 800 1344 --out rmt_s.onnx \
        --checkpoint rmt_s_in1k.pth --verify
    python tools/export_onnx.py configs/maskrcnn_rmt_s_coco.py --shape 800 1344 --out rmt_s.onnx \
        --checkpoint work_dirs/maskrcnn_rmt_s_coco/epoch_12.pth --exporter torchscript
"""
import warnings

warnings.filterwarnings('ignore', 'pkg_resources is deprecated', UserWarning)  # setuptools noise

import argparse
import os
import sys

from rmt_mm.checkpoints.backbone import load_backbone_checkpoint
from rmt_mm.checkpoints.convert import parse_arch
from rmt_mm.cli import add_debug_arg, load_config, run_cli
from rmt_mm.errors import ConfigError
from rmt_mm.export import EXPORTERS, export_onnx, verify_onnx
from rmt_mm.models import FAMILIES, DenseBackbone


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('model', help="an arch ('s', 'rmt_small', 'restv2_tiny', a JSON dict) "
                        'or a detection/segmentation config (its model.backbone)')
    parser.add_argument('--shape', type=int, nargs=2, required=True, metavar=('H', 'W'))
    parser.add_argument('--out', required=True, help='the .onnx file to write')
    parser.add_argument('--checkpoint', help='backbone, converted or detector/segmentor '
                        'weights (loaded strictly)')
    parser.add_argument('--exporter', choices=EXPORTERS, default='dynamo')
    parser.add_argument('--opset', type=int, default=18)
    parser.add_argument('--verify', action='store_true',
                        help='run the file with onnxruntime and print the max abs error per '
                        'output')
    add_debug_arg(parser)
    return parser.parse_args(argv)


def build_backbone(spec: str) -> DenseBackbone:
    if spec.endswith('.py'):
        cfg = dict(load_config(spec).model.backbone)
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
    model = build_backbone(args.model)
    if args.checkpoint:
        load_backbone_checkpoint(model, args.checkpoint)
    export_onnx(model, args.shape, args.out, args.exporter, args.opset)
    print(f'{args.out}: {model.describe()} at {args.shape[0]}x{args.shape[1]} '
          f'({args.exporter} exporter, opset {args.opset}, {os.path.getsize(args.out)} bytes)')
    if args.verify:
        for name, err in verify_onnx(model, args.out, args.shape).items():
            print(f'{name}: max abs error vs PyTorch {err:.2e}')
    return 0


def main(argv=None) -> int:
    return run_cli(export, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
