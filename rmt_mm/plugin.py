"""The plugin: what connects rmt_mm to mmengine, mmdet and mmseg, all of it in :func:`install`.

Importing this module calls :func:`install`; configs name it in ``custom_imports`` (so mmdet's
and mmseg's own tools and Inferencers load it), and this repository's tools call it. Nothing
else in the package changes the host framework: :mod:`rmt_mm.models` is plain PyTorch.
:func:`install` is idempotent and does exactly this (docs/install.md lists it too):

1. Registers the hooks (:mod:`rmt_mm.engine.hooks`, :mod:`rmt_mm.checkpoints.hooks`) and the
   ResT optimizer constructor (:mod:`rmt_mm.engine.optimizers`) in
   mmengine's root registries, which every scope falls back to; the backbones in ``mmdet`` and
   ``mmseg`` ``MODELS``, ``CheckedCocoDataset`` in ``mmdet`` ``DATASETS`` and ``CheckSegLabels``
   in ``mmseg`` ``TRANSFORMS``, for each codebase that is installed.
2. Routes mmengine's checkpoint schemes for local paths and http(s) URLs through
   :func:`rmt_mm.checkpoints.reading.safe_load` (weights-only reading, one-line errors).
3. Makes ``HistoryBuffer`` pickle without its statistics functions and restore only its values,
   and lets checkpoints hold it (:mod:`rmt_mm.checkpoints.mmengine_io`).
4. Registers the ``atomic_local`` file backend, through which
   :class:`~rmt_mm.checkpoints.hooks.AtomicCheckpointHook` writes.
"""
import importlib
from typing import Callable, Dict, Iterable, List

from mmengine import registry as root
from mmengine.fileio import register_backend
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

from .checkpoints import mmengine_io
from .checkpoints.hooks import AtomicCheckpointHook, StrictLoadHook
from .checkpoints.reading import allow_globals
from .datasets.transforms import CheckSegLabels
from .engine.hooks import MidEpochResumeHook, PreemptionHook, RankWatchdogHook, RNGStateHook
from .engine.optimizers import ResTStageDecayOptimizerConstructor
from .log import quiet_codebase_import
from .models import FAMILIES

ROOT_MODULES: Dict[str, Iterable[type]] = dict(
    HOOKS=(RNGStateHook, MidEpochResumeHook, PreemptionHook, RankWatchdogHook, StrictLoadHook,
           AtomicCheckpointHook),
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


def install() -> List[str]:
    """Connect rmt_mm to the installed OpenMMLab codebases (see the module docstring); return
    the scopes served."""
    for name, classes in ROOT_MODULES.items():
        _register(getattr(root, name), classes)
    served = []
    for scope, modules in SCOPE_MODULES.items():
        try:
            registries = importlib.import_module(f'{scope}.registry')
        except ImportError:
            continue
        with quiet_codebase_import():
            for name, classes in modules.items():
                _register(getattr(registries, name), classes())
        served.append(scope)
    CheckpointLoader.register_scheme('', mmengine_io.load_from_local, force=True)
    CheckpointLoader.register_scheme(('http://', 'https://'), mmengine_io.load_from_http,
                                     force=True)
    HistoryBuffer.__getstate__ = mmengine_io.history_buffer_getstate
    HistoryBuffer.__setstate__ = mmengine_io.history_buffer_setstate
    allow_globals([HistoryBuffer])
    register_backend('atomic_local', mmengine_io.AtomicLocalBackend, force=True)
    return served


install()
