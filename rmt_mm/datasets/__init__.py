"""Demo data and data checks: synthetic COCO-format and ADE20K-layout shape sets, and a
label-checking transform for segmentation pipelines."""
from .shapes import CATEGORIES, make_shapes_coco, make_split
from .shapes_seg import ADE20K_IDS, SHAPES_CLASSES, make_shapes_ade
from .transforms import CheckSegLabels

__all__ = ['ADE20K_IDS', 'CATEGORIES', 'SHAPES_CLASSES', 'CheckSegLabels', 'make_shapes_ade',
           'make_shapes_coco', 'make_split']
