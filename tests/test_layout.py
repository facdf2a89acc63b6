"""The package's module graph: no import cycles, every module importable on its own, the models
and the checkpoint reading in plain PyTorch, and only the plugin reaching into the host."""
import ast
import json
import subprocess
import sys
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
#: Runs every import check below in one fresh interpreter (forking a child per check).
PROBE = Path(__file__).resolve().parent / 'helpers' / 'layout_probe.py'

@pytest.fixture(scope='module')
def import_checks(tmp_path_factory) -> Dict[str, object]:
    """``{check: outcome}`` of the import checks in a fresh interpreter (``PROBE``); its stderr
    under ``'stderr'``."""
    import torch

    from rmt_mm.models import RMT

    checkpoint = tmp_path_factory.mktemp('layout') / 'rmt_t.pth'
    torch.save({'state_dict': RMT(arch='tiny').state_dict()}, checkpoint)
    settings = dict(modules=MODULES, plain_pytorch=PLAIN_PYTORCH, openmmlab=OPENMMLAB,
                    checkpoint=str(checkpoint))
    result = subprocess.run([sys.executable, str(PROBE), json.dumps(settings)],
                            capture_output=True, text=True, timeout=600)
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
