"""Pure-PyTorch backbones (no mmdet/mmseg needed)."""
from typing import Dict, Type

from .base import DenseBackbone
from .rest import REST_ARCHS, ResT
from .restv2 import RESTV2_ARCHS, ResTV2
from .rmt import RMT, RMT_ARCHS, arch_name, resolve_arch

#: The backbone families, by the prefix their arch names take in the converter (``rmt_s``,
#: ``restv2_tiny``). Registration, the converter, the model zoo and the tests all read this
#: table: a new family is its own module plus one entry here.
FAMILIES: Dict[str, Type[DenseBackbone]] = {'rmt': RMT, 'rest': ResT, 'restv2': ResTV2}
#: The family a bare arch name (``'s'``, ``'small'``) means.
DEFAULT_FAMILY = 'rmt'

__all__ = ['DEFAULT_FAMILY', 'DenseBackbone', 'FAMILIES', 'RMT', 'RMT_ARCHS', 'arch_name',
           'resolve_arch', 'ResT', 'REST_ARCHS', 'ResTV2', 'RESTV2_ARCHS']
