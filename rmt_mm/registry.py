"""Register the backbones with whichever OpenMMLab codebases are installed.

Importing :mod:`rmt_mm` (directly, via ``custom_imports`` or through ``tools/``) calls
:func:`register_all_modules`, so configs can use ``type='RMT'`` (or ``'ResT'``, ``'ResTV2'``)
under both the ``mmdet`` and ``mmseg`` scopes without further imports. Segmentation configs can also use the
``CheckSegLabels`` transform (mmseg scope only), detection configs the ``CheckedCocoDataset``
(mmdet scope only). ``ResTStageDecayOptimizerConstructor`` goes into mmengine's root registry,
which every scope falls back to. It also makes mmengine resolve ``mmseg::``/``mmdet::`` bases on
the OneDL fork (``_rmt_mm_scopes``; the installed ``.pth`` file does so at start-up already, this
covers interpreters that skip it).
"""
import importlib
from typing import List

from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS

import _rmt_mm_scopes

from .datasets import CheckSegLabels
from .layer_decay import ResTStageDecayOptimizerConstructor
from .models import FAMILIES

SCOPES = ('mmdet', 'mmseg')
TRANSFORMS = dict(mmseg=(CheckSegLabels, ))


def _register(registry, classes) -> None:
    for cls in classes:
        if registry.module_dict.get(cls.__name__) is not cls:
            registry.register_module(module=cls, force=True)


def register_all_modules() -> List[str]:
    """Add the backbones to each available scope's ``MODELS`` (and our transforms to its
    ``TRANSFORMS``) and the optimizer constructor to mmengine's; return the scopes served."""
    _rmt_mm_scopes.install()
    _register(OPTIM_WRAPPER_CONSTRUCTORS, (ResTStageDecayOptimizerConstructor, ))
    served = []
    for scope in SCOPES:
        try:
            registries = importlib.import_module(f'{scope}.registry')
        except ImportError:
            continue
        _register(registries.MODELS, FAMILIES.values())
        _register(registries.TRANSFORMS, TRANSFORMS.get(scope, ()))
        if scope == 'mmdet':  # subclasses mmdet's CocoDataset, so imported only with mmdet
            from .datasets.checked_coco import CheckedCocoDataset
            _register(registries.DATASETS, (CheckedCocoDataset, ))
        served.append(scope)
    return served
