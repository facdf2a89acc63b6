"""RMT and ResT backbones for MMDetection 3.x and MMSegmentation 1.x."""
from . import serialization
from .hooks import RNGStateHook
from .models import RMT, RMT_ARCHS
from .registry import register_all_modules

__version__ = '0.1.0'

serialization.install()
register_all_modules()

__all__ = ['RMT', 'RMT_ARCHS', 'RNGStateHook', 'register_all_modules', '__version__']
