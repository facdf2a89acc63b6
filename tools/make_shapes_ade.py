#!/usr/bin/env python
"""Write the synthetic ADE20K-layout "shapes" set (see rmt_mm/datasets/shapes_seg.py).

The same arguments always give the same files, e.g. ``data/shapes_ade`` for the segmentation
demo: ``python tools/make_shapes_ade.py data/shapes_ade``.
"""
import argparse
import sys

from rmt_mm.datasets.shapes_seg import make_shapes_ade


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('root', help='output directory (images/ and annotations/ go below)')
    parser.add_argument('--train', type=int, default=200, help='training images')
    parser.add_argument('--val', type=int, default=40, help='validation images')
    parser.add_argument('--size', type=int, nargs=2, default=(176, 240),
                        metavar=('H', 'W'), help='mean image size; each varies by up to 20%%')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    counts = make_shapes_ade(args.root, args.train, args.val, tuple(args.size), args.seed)
    print(f'wrote {counts["training"]} training and {counts["validation"]} validation images '
          f'to {args.root}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
