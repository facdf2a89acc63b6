"""Segmentation data helpers: a label-checking transform and a synthetic ADE20K-layout set."""
from .shapes_seg import ADE20K_IDS, SHAPES_CLASSES, make_shapes_ade
from .transforms import CheckSegLabels

__all__ = ['ADE20K_IDS', 'SHAPES_CLASSES', 'CheckSegLabels', 'make_shapes_ade']
