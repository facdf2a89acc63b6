from .shapes import CATEGORIES, make_shapes_coco, make_split

__all__ = ['CATEGORIES', 'make_shapes_coco', 'make_split']
