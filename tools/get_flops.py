#!/usr/bin/env python
"""Parameters and FLOPs of a backbone, or of a whole detector/segmentor config.

Counted with mmengine's FlopAnalyzer (the fvcore counter: one multiply-add = one FLOP;
softmax, GELU, sin/cos and element-wise ops are not counted, so the figures are directly
comparable with the fvcore numbers the RMT authors' code prints). FLOPs are a property of the
function, not of the kernel: fused kernels (``attn_impl='sdpa'``) hide their matmuls from the
tracer, so counting always runs the backbone's ``reference`` attention, whose matmuls are
explicit.

    python tools/get_flops.py --arch t --shape 800 1280
    python tools/get_flops.py --config configs/maskrcnn_rmt_s_coco.py --shape 800 1280
"""
import argparse
import inspect
from typing import List, Optional, Tuple

import torch
from mmengine.analysis import FlopAnalyzer
from torch import nn

import rmt_mm.plugin  # noqa: F401  (registers the backbones)
from rmt_mm.benchmark import build_whole_model
from rmt_mm.cli import add_debug_arg, run_cli
from rmt_mm.models import RMT


class _TensorForward(nn.Module):
    """Wraps a detector/segmentor so tracing sees ``inputs -> tensors`` (mode='tensor')."""

    def __init__(self, model: nn.Module, samples: list) -> None:
        super().__init__()
        self.model = model
        self.samples = samples

    def forward(self, inputs: torch.Tensor):
        head = getattr(self.model, 'decode_head', None)
        if head is not None and 'batch_data_samples' in inspect.signature(head.forward).parameters:
            # mmseg's _forward calls the decode head without the samples Mask2Former's needs.
            return head(self.model.extract_feat(inputs), self.samples)
        return self.model._forward(inputs, self.samples)


def count(model: nn.Module, inputs: torch.Tensor) -> Tuple[float, dict]:
    analyzer = FlopAnalyzer(model.eval(), inputs)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    with torch.no_grad():
        return analyzer.total(), analyzer.by_operator()


def build_from_config(path: str, shape: Tuple[int, int]) -> Tuple[nn.Module, torch.Tensor]:
    model, sample = build_whole_model(path, shape, attn_impl='reference')
    return _TensorForward(model, [sample]), torch.randn(1, 3, *shape)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument('--arch', help='RMT arch (t/s/b/l): count the backbone alone')
    group.add_argument('--config', help='mmdet/mmseg config: count the whole model')
    parser.add_argument('--shape', type=int, nargs=2, default=(800, 1280), metavar=('H', 'W'))
    add_debug_arg(parser)
    return parser.parse_args(argv)


def get_flops(args: argparse.Namespace) -> int:
    if args.arch:
        model = RMT(arch=args.arch, attn_impl='reference')
        inputs = torch.randn(1, 3, *args.shape)
        name = f'RMT {args.arch} backbone'
    else:
        model, inputs = build_from_config(args.config, tuple(args.shape))
        name = args.config
    params = sum(p.numel() for p in model.parameters())
    flops, by_op = count(model, inputs)
    print(f'{name} at {args.shape[0]}x{args.shape[1]}: params {params / 1e6:.2f} M, '
          f'FLOPs {flops / 1e9:.2f} G')
    print('  by operator: ' + ', '.join(f'{k} {v / 1e9:.2f} G' for k, v in
                                        sorted(by_op.items(), key=lambda kv: -kv[1])))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    return run_cli(get_flops, parse_args(argv))


if __name__ == '__main__':
    raise SystemExit(main())
