"""Pure-PyTorch backbones (no mmdet/mmseg needed)."""
from .rmt import RMT, RMT_ARCHS, arch_name, resolve_arch

__all__ = ['RMT', 'RMT_ARCHS', 'arch_name', 'resolve_arch']
