"""Registration of the package's modules, all of it here and in one way.

Importing :mod:`rmt_mm` (directly, through a config's ``custom_imports`` or through ``tools/``)
calls :func:`register_all_modules`. Modules that every codebase uses (hooks, the optimizer
constructor) go into mmengine's root registries, which every scope falls back to; modules that
belong to one codebase go into that scope's registries when it is installed: the backbones into
``mmdet`` and ``mmseg`` ``MODELS``, ``CheckSegLabels`` into ``mmseg``'s ``TRANSFORMS``,
``CheckedCocoDataset`` into ``mmdet``'s ``DATASETS``. Registering also makes mmengine resolve
``mmseg::``/``mmdet::`` bases on the OneDL fork (``_rmt_mm_scopes``; the installed ``.pth`` file
does so at start-up already, this covers interpreters that skip it).
"""
import importlib
from typing import Callable, Dict, Iterable, List

from mmengine import registry as root

import _rmt_mm_scopes

from .datasets.transforms import CheckSegLabels
from .hooks import AtomicCheckpointHook, RNGStateHook, StrictLoadHook
from .layer_decay import ResTStageDecayOptimizerConstructor
from .models import FAMILIES

ROOT_MODULES: Dict[str, Iterable[type]] = dict(
    HOOKS=(RNGStateHook, StrictLoadHook, AtomicCheckpointHook),
    OPTIM_WRAPPER_CONSTRUCTORS=(ResTStageDecayOptimizerConstructor, ))


def _checked_coco() -> Iterable[type]:
    # Subclasses mmdet's CocoDataset, so it is imported only where mmdet is.
    from .datasets.checked_coco import CheckedCocoDataset
    return (CheckedCocoDataset, )


#: Per scope: registry name -> the classes it gets (read at call time, so that a family added
#: to ``FAMILIES`` is registered too).
SCOPE_MODULES: Dict[str, Dict[str, Callable[[], Iterable[type]]]] = dict(
    mmdet=dict(MODELS=lambda: FAMILIES.values(), DATASETS=_checked_coco),
    mmseg=dict(MODELS=lambda: FAMILIES.values(), TRANSFORMS=lambda: (CheckSegLabels, )))


def _register(registry, classes: Iterable[type]) -> None:
    for cls in classes:
        if registry.module_dict.get(cls.__name__) is not cls:
            registry.register_module(module=cls, force=True)


def register_all_modules() -> List[str]:
    """Register everything in the root registries and in each installed scope's; return the
    scopes served."""
    _rmt_mm_scopes.install()
    for name, classes in ROOT_MODULES.items():
        _register(getattr(root, name), classes)
    served = []
    for scope, modules in SCOPE_MODULES.items():
        try:
            registries = importlib.import_module(f'{scope}.registry')
        except ImportError:
            continue
        for name, classes in modules.items():
            _register(getattr(registries, name), classes())
        served.append(scope)
    return served
