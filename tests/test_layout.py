"""The package's module graph: no import cycles, every module importable on its own, the models
and the checkpoint reading in plain PyTorch, and only the plugin reaching into the host."""
import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, Set

import pytest

import rmt_mm

PACKAGE = Path(rmt_mm.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


MODULES = sorted(module_name(p) for p in PACKAGE.rglob('*.py'))


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == 'TYPE_CHECKING') or (
        isinstance(test, ast.Attribute) and test.attr == 'TYPE_CHECKING')


def package_imports(path: Path) -> Set[str]:
    """Modules of the package that ``path`` imports anywhere (also inside functions, where a
    deferred import only hides a cycle), except under ``if TYPE_CHECKING:``."""
    name = module_name(path)
    base = name if path.name == '__init__.py' else name.rpartition('.')[0]
    found: Set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base.split('.')[:len(base.split('.')) - node.level + 1]
                target = '.'.join(anchor + ([node.module] if node.module else []))
            else:
                target = node.module or ''
            for alias in node.names:
                sub = f'{target}.{alias.name}'
                found.add(sub if sub in MODULES else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return {m for m in found if m in MODULES and m != name}


def import_graph() -> Dict[str, Set[str]]:
    return {module_name(p): package_imports(p) for p in PACKAGE.rglob('*.py')}


def find_cycle(graph: Dict[str, Set[str]]):
    state: Dict[str, int] = {}
    stack = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle():
    assert find_cycle(import_graph()) is None, ' -> '.join(find_cycle(import_graph()))


def test_cycle_detector_sees_deferred_imports(tmp_path):
    """The check above can fail: a function-level import that closes a loop is a cycle."""
    graph = import_graph()
    graph['rmt_mm.checkpoints.backbone'] |= {'rmt_mm.models'}
    assert find_cycle(graph) is not None


def test_loader_knows_no_model_and_models_use_the_loader():
    graph = import_graph()
    assert not {m for m in graph['rmt_mm.checkpoints.backbone'] if m.startswith('rmt_mm.models')}
    assert 'rmt_mm.checkpoints.backbone' in graph['rmt_mm.models.base']
    assert 'rmt_mm.models' in graph['rmt_mm.checkpoints.convert']


#: Modules that must work with torch and numpy alone: the models, what they load checkpoints
#: with, the converter and the ONNX export.
PLAIN_PYTORCH = [m for m in MODULES if m.startswith('rmt_mm.models')] + [
    'rmt_mm', 'rmt_mm.compat', 'rmt_mm.errors', 'rmt_mm.log', 'rmt_mm.checkpoints',
    'rmt_mm.checkpoints.atomic', 'rmt_mm.checkpoints.backbone', 'rmt_mm.checkpoints.convert',
    'rmt_mm.checkpoints.reading', 'rmt_mm.export']
OPENMMLAB = ('mmengine', 'mmcv', 'mmdet', 'mmseg')

#: One fresh interpreter runs every import check below: it imports torch (shared by all), then
#: forks one child per check, so each child starts with nothing of rmt_mm or OpenMMLab loaded;
#: then it imports the slow third-party modules and forks one child per package module (each
#: imported first in its process). Every child prints one json line ``[check, outcome]``.
IMPORT_CHECKS = textwrap.dedent("""
    import importlib, importlib.abc, json, os, sys, traceback
    import torch  # noqa: F401

    class Block(importlib.abc.MetaPathFinder):
        \"\"\"Refuses to import the OpenMMLab packages, as an environment without them would.\"\"\"
        def find_spec(self, name, path, target=None):
            if name.split('.')[0] in OPENMMLAB:
                raise ImportError(f'{name} is blocked')

    def openmmlab_loaded():
        return sorted({m.split('.')[0] for m in sys.modules} & set(OPENMMLAB))

    def plain_pytorch():
        sys.meta_path.insert(0, Block())
        for name in PLAIN_PYTORCH:
            importlib.import_module(name)
        return 'ok'

    def block_catches_plugin():
        sys.meta_path.insert(0, Block())
        try:
            import rmt_mm.plugin  # noqa: F401
        except BaseException:
            return traceback.format_exc()
        return 'imported'

    def models_change_nothing():
        from rmt_mm.models import RMT
        model = RMT(arch='tiny', init_cfg=dict(type='Pretrained', checkpoint=CHECKPOINT))
        model.init_weights()
        model.eval()(torch.zeros(1, 3, 64, 64))
        return openmmlab_loaded()

    def plugin_loads():
        import rmt_mm.plugin  # noqa: F401
        from mmdet.registry import DATASETS, MODELS
        from mmengine.registry import HOOKS
        assert MODELS.get('RMT') and DATASETS.get('CheckedCocoDataset')
        assert HOOKS.get('StrictLoadHook')
        return sorted(m for m in sys.modules if m.startswith('rmt_mm'))

    def in_child(name, check):
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

    assert not [m for m in sys.modules if m.startswith('rmt_mm')]
    for check in (plain_pytorch, block_catches_plugin, models_change_nothing, plugin_loads):
        in_child(check.__name__, check)

    import mmengine.model, mmcv.cnn  # noqa: F401,E401  (shared, slow third-party imports)
    failed = []
    for name in MODULES:
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
    print(json.dumps(['every_module_alone', failed]), flush=True)
""")


@pytest.fixture(scope='module')
def import_checks(tmp_path_factory) -> Dict[str, object]:
    """``{check: outcome}`` of the fresh interpreter above; its stderr under ``'stderr'``."""
    import torch

    from rmt_mm.models import RMT

    checkpoint = tmp_path_factory.mktemp('layout') / 'rmt_t.pth'
    torch.save({'state_dict': RMT(arch='tiny').state_dict()}, checkpoint)
    script = (f'MODULES = {MODULES!r}\nPLAIN_PYTORCH = {PLAIN_PYTORCH!r}\n'
              f'OPENMMLAB = {OPENMMLAB!r}\nCHECKPOINT = {str(checkpoint)!r}\n' + IMPORT_CHECKS)
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    outcomes = dict(json.loads(line) for line in result.stdout.splitlines()
                    if line.startswith('["'))
    outcomes['stderr'] = result.stderr[-3000:]
    return outcomes


def test_every_module_imports_alone(import_checks):
    """Each module imported first in a fresh interpreter (forked after the third-party imports,
    so the check costs one start-up rather than one per module)."""
    assert import_checks['every_module_alone'] == [], import_checks['stderr']


def test_plugin_loads_only_what_registration_needs(import_checks):
    """Importing the plugin registers every module, but loads neither the demo data generators,
    nor the converter, nor the tools' shared code."""
    loaded = import_checks['plugin_loads']
    assert isinstance(loaded, list), loaded
    assert 'rmt_mm.plugin' in loaded
    assert set(loaded).isdisjoint({'rmt_mm.datasets.shapes', 'rmt_mm.datasets.shapes_seg',
                                   'rmt_mm.checkpoints.convert', 'rmt_mm.cli'}), loaded


def test_plain_pytorch_modules_import_without_openmmlab(import_checks):
    assert import_checks['plain_pytorch'] == 'ok', import_checks['plain_pytorch']


def test_the_block_above_would_catch_an_openmmlab_import(import_checks):
    outcome = import_checks['block_catches_plugin']
    assert outcome != 'imported' and 'mmengine is blocked' in outcome, outcome


def test_models_change_nothing_outside_the_package(import_checks):
    """Building, loading (``init_cfg``) and running a backbone imports no OpenMMLab package,
    so nothing of mmengine, mmdet or mmseg changes, also where they are installed."""
    assert import_checks['models_change_nothing'] == [], import_checks['models_change_nothing']
