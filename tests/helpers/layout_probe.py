"""The import checks of test_layout.py, run in a fresh interpreter:
``python tests/helpers/layout_probe.py SETTINGS_JSON``, where the JSON object holds ``modules``
(every module of the package), ``plain_pytorch`` (those that must import without OpenMMLab),
``openmmlab`` (the package names to block) and ``checkpoint`` (an RMT-T state dict to load).

It imports torch (shared by all checks), then forks one child per check, so each child starts
with nothing of rmt_mm or OpenMMLab loaded; then it imports the slow third-party modules and
forks one child per package module (each imported first in its process). Every child prints one
JSON line ``[check, outcome]``.
"""
import importlib
import importlib.abc
import json
import os
import sys
import traceback
from typing import Callable, List, Sequence

import torch


class Block(importlib.abc.MetaPathFinder):
    """Refuses to import the OpenMMLab packages, as an environment without them would."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = set(names)

    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in self.names:
            raise ImportError(f'{name} is blocked')


class Probe:

    def __init__(self, settings: dict) -> None:
        self.modules: List[str] = settings['modules']
        self.plain_pytorch: List[str] = settings['plain_pytorch']
        self.openmmlab: List[str] = settings['openmmlab']
        self.checkpoint: str = settings['checkpoint']

    def openmmlab_loaded(self) -> List[str]:
        return sorted({m.split('.')[0] for m in sys.modules} & set(self.openmmlab))

    def plain_pytorch_imports(self) -> str:
        sys.meta_path.insert(0, Block(self.openmmlab))
        for name in self.plain_pytorch:
            importlib.import_module(name)
        return 'ok'

    def block_catches_plugin(self) -> str:
        sys.meta_path.insert(0, Block(self.openmmlab))
        try:
            import rmt_mm.plugin  # noqa: F401
        except BaseException:
            return traceback.format_exc()
        return 'imported'

    def models_change_nothing(self) -> List[str]:
        from rmt_mm.models import RMT
        model = RMT(arch='tiny', init_cfg=dict(type='Pretrained', checkpoint=self.checkpoint))
        model.init_weights()
        model.eval()(torch.zeros(1, 3, 64, 64))
        return self.openmmlab_loaded()

    def plugin_loads(self) -> List[str]:
        importlib.import_module('rmt_mm.plugin')  # first, then the registries it fills
        from mmdet.registry import DATASETS, MODELS
        from mmengine.registry import HOOKS
        assert MODELS.get('RMT') and DATASETS.get('CheckedCocoDataset')
        assert HOOKS.get('StrictLoadHook')
        return sorted(m for m in sys.modules if m.startswith('rmt_mm'))

    def every_module_alone(self) -> List[str]:
        import mmcv.cnn  # noqa: F401  (shared, slow third-party imports)
        import mmengine.model  # noqa: F401
        failed = []
        for name in self.modules:
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                try:
                    importlib.import_module(name)
                except BaseException as err:
                    print(f'{name}: {type(err).__name__}: {err}', file=sys.stderr, flush=True)
                    os._exit(1)
                os._exit(0)
            if os.waitpid(pid, 0)[1]:
                failed.append(name)
        return failed


def in_child(name: str, check: Callable[[], object]) -> None:
    """``check()`` in a forked child, which prints ``[name, outcome]``."""
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        try:
            outcome = check()
        except BaseException:
            outcome = 'failed: ' + traceback.format_exc()
        print(json.dumps([name, outcome]), flush=True)
        os._exit(0)
    os.waitpid(pid, 0)


def main(argv: Sequence[str]) -> None:
    # Imports resolve as in ``python -c`` from the working directory, not from this folder.
    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        sys.path[0] = os.getcwd()
    probe = Probe(json.loads(argv[0]))
    assert not [m for m in sys.modules if m.startswith('rmt_mm')]
    for name, check in (('plain_pytorch', probe.plain_pytorch_imports),
                        ('block_catches_plugin', probe.block_catches_plugin),
                        ('models_change_nothing', probe.models_change_nothing),
                        ('plugin_loads', probe.plugin_loads)):
        in_child(name, check)
    print(json.dumps(['every_module_alone', probe.every_module_alone()]), flush=True)


if __name__ == '__main__':
    main(sys.argv[1:])
