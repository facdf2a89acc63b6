#!/usr/bin/env python
"""Convert an upstream ImageNet checkpoint (RMT, ResT, ResTv2) into backbone weights for
mmdet/mmseg.

Reads the authors' DeiT-style (``model``/``model_ema``) or token-labeling
(``state_dict``/``state_dict_ema``) files without unpickling code, drops the classification head,
checks every key and shape against the arch and writes ``{'state_dict': ..., 'meta': ...}``,
ready for ``init_cfg=dict(type='Pretrained', checkpoint=DST)``.

    python tools/convert_imagenet_ckpt.py RMT-S.pth rmt_s_in1k.pth            # arch inferred
    python tools/convert_imagenet_ckpt.py RMT-S.pth rmt_s_in1k_ema.pth --ema --arch s
"""
import warnings

warnings.filterwarnings('ignore', 'pkg_resources is deprecated', UserWarning)  # setuptools noise

import argparse
import sys

from rmt_mm.checkpoints.convert import convert_checkpoint, parse_arch
from rmt_mm.cli import add_debug_arg, run_cli
from rmt_mm.errors import ConfigError


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='upstream checkpoint')
    parser.add_argument('dst', help='output file')
    parser.add_argument('--arch', help="e.g. 's', 'rmt_small', 'rest_small', 'restv2_tiny', or "
                        'a JSON dict of hyper-parameters (add "backbone": "ResT"/"ResTV2" for '
                        'ResT); inferred from the weights when omitted')
    parser.add_argument('--ema', action='store_true',
                        help='take the EMA weights (default: the raw weights upstream '
                        'fine-tuned from)')
    parser.add_argument('--allow-nonfinite', action='store_true',
                        help='convert weights that hold NaN or Inf (refused by default)')
    add_debug_arg(parser)
    return parser.parse_args(argv)


def convert(args: argparse.Namespace) -> int:
    try:
        parse_arch(args.arch)
    except ValueError as err:  # also a JSON syntax error
        raise ConfigError(f'--arch {args.arch}: {err}') from None
    meta = convert_checkpoint(args.src, args.dst, args.arch, args.ema, args.allow_nonfinite)
    print(f'{meta["source"]} ({meta["layout"]}{", EMA" if meta["ema"] else ""}) -> {args.dst}: '
          f'{meta["description"]}; dropped {len(meta["dropped_keys"])} head keys; '
          f'not in checkpoint (initialised fresh): {meta["not_in_checkpoint"] or "none"}')
    return 0


def main(argv=None) -> int:
    return run_cli(convert, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
