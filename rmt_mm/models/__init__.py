"""Pure-PyTorch backbones (no mmdet/mmseg needed)."""
from .rest import REST_ARCHS, ResT
from .rmt import RMT, RMT_ARCHS, arch_name, resolve_arch

__all__ = ['RMT', 'RMT_ARCHS', 'arch_name', 'resolve_arch', 'ResT', 'REST_ARCHS']
