"""Pure-PyTorch backbones (no mmdet/mmseg needed)."""
from .rest import REST_ARCHS, ResT
from .restv2 import RESTV2_ARCHS, ResTV2
from .rmt import RMT, RMT_ARCHS, arch_name, resolve_arch

__all__ = ['RMT', 'RMT_ARCHS', 'arch_name', 'resolve_arch', 'ResT', 'REST_ARCHS', 'ResTV2',
           'RESTV2_ARCHS']
