#!/usr/bin/env python
"""Print the backbone zoo: parameters and output shapes at a detection-sized input.

Shapes come from a forward pass on the meta device, so even RMT-L at 1333x800 costs nothing.
"""
import argparse
from typing import List, Optional

import torch

from rmt_mm.models import FAMILIES


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--size', type=int, nargs=2, default=(800, 1333), metavar=('H', 'W'))
    parser.add_argument('--family', nargs='+', choices=sorted(FAMILIES),
                        help='only these backbone families (default: all)')
    args = parser.parse_args(argv)
    h, w = args.size
    print(f'| backbone | arch | params (M) | output shapes at {h}x{w} (C x H x W) |')
    print('|---|---|---|---|')
    for family, cls in FAMILIES.items():
        if args.family and family not in args.family:
            continue
        for arch in cls.arch_zoo:
            with torch.device('meta'):
                model = cls(arch=arch).eval()
                outs = model(torch.empty(1, 3, h, w))
            params = sum(p.numel() for p in model.parameters()) / 1e6
            shapes = ', '.join('x'.join(map(str, o.shape[1:])) for o in outs)
            print(f'| {cls.__name__} | {arch} | {params:.2f} | {shapes} |')


if __name__ == '__main__':
    main()
