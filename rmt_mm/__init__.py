"""RMT and ResT backbones for MMDetection 3.x and MMSegmentation 1.x.

:mod:`rmt_mm.models` holds the backbones in plain PyTorch; importing them changes nothing
outside the package. :mod:`rmt_mm.plugin` (named in the configs' ``custom_imports``) connects
them to mmengine, mmdet and mmseg.
"""
from .models import RMT, RMT_ARCHS, ResT, ResTV2

__version__ = '0.1.0'

__all__ = ['RMT', 'RMT_ARCHS', 'ResT', 'ResTV2', '__version__']
