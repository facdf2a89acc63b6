#!/usr/bin/env python
"""Generate the deterministic COCO-format shapes dataset used by the CPU demo and tests."""
import argparse

from rmt_mm.datasets.shapes import dataset_summary, make_shapes_coco


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('out_dir', nargs='?', default='data/shapes_coco',
                        help='writes {train,val}/*.png and annotations/{train,val}.json here')
    parser.add_argument('--num-train', type=int, default=200)
    parser.add_argument('--num-val', type=int, default=50)
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    anns = make_shapes_coco(args.out_dir, args.num_train, args.num_val, args.seed)
    for split, path in anns.items():
        print(f'{split}: {path}: {dataset_summary(path)}')


if __name__ == '__main__':
    main()
