"""Register the backbones with whichever OpenMMLab codebases are installed.

Importing :mod:`rmt_mm` (directly, via ``custom_imports`` or through ``tools/``) calls
:func:`register_all_modules`, so configs can use ``type='RMT'`` (or ``'ResT'``, ``'ResTV2'``) under both the ``mmdet`` and
``mmseg`` scopes without further imports.
"""
import importlib
from typing import List

from .models import RMT, ResT, ResTV2

BACKBONES = (RMT, ResT, ResTV2)
SCOPES = ('mmdet', 'mmseg')


def register_all_modules() -> List[str]:
    """Add the backbones to each available scope's ``MODELS``; return the scopes served."""
    served = []
    for scope in SCOPES:
        try:
            registry = importlib.import_module(f'{scope}.registry').MODELS
        except ImportError:
            continue
        for cls in BACKBONES:
            if registry.module_dict.get(cls.__name__) is not cls:
                registry.register_module(module=cls, force=True)
        served.append(scope)
    return served
