import importlib.util
import json
import logging
import os
import sys
from pathlib import Path

import pytest
import torch

# pytest (9.x) adds its log capture handlers to every logger that does not propagate, which
# includes torch's structured-trace logger (torch.__trace); torch serialises every compiled and
# exported graph for tlparse whenever that logger has a handler, which made each compilation take
# minutes. Propagating, it gets none: pytest leaves it alone and torch skips the serialisation.
logging.getLogger('torch.__trace').propagate = True

if importlib.util.find_spec('mmengine'):  # not in the plain-PyTorch check (tests/test_plain.py)
    import rmt_mm.plugin  # noqa: F401  (registration and safe loading, as configs and tools do)

# Plain asserts in the shared helpers report their values too (must precede their import).
pytest.register_assert_rewrite('helpers')
from helpers import fixture_dir  # noqa: E402


@pytest.fixture(scope='session')
def rmt_fixtures() -> Path:
    return fixture_dir('rmt')


@pytest.fixture(scope='session')
def rmt_manifest(rmt_fixtures) -> dict:
    return json.loads((rmt_fixtures / 'manifest.json').read_text())


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


#: What torchrun and Slurm launchers read: a test that leaves one set misdirects every later
#: multi-process test (a leaked MASTER_ADDR made torchrun wait for a host that does not exist).
#: (LOCAL_RANK is left out: the train and test tools set it to 0 as mmdet's do.)
_LAUNCH_ENV = ('MASTER_ADDR', 'MASTER_PORT', 'RANK', 'WORLD_SIZE')


@pytest.fixture(autouse=True)
def _launch_environment_kept():
    before = {key: os.environ.get(key) for key in _LAUNCH_ENV}
    yield
    after = {key: os.environ.get(key) for key in _LAUNCH_ENV}
    assert after == before, f'the test changed the launch environment: {before} -> {after}'


@pytest.fixture(autouse=True)
def _no_handlers_on_closed_streams():
    """Tools run in this process log through loggers (mmengine's MMLogger) whose handlers
    keep the stderr of the run that created them: a captured stream, closed once that test
    ends. A later run's log call would print logging's own traceback into that run's stderr."""
    yield
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    if 'mmengine.logging' in sys.modules:  # MMLogger instances live outside logging's manager
        loggers += sys.modules['mmengine.logging'].MMLogger._instance_dict.values()
    for logger in loggers:
        for handler in list(logger.handlers):
            if getattr(getattr(handler, 'stream', None), 'closed', False):
                logger.removeHandler(handler)


def _managed_classes() -> list:
    """mmengine's ``ManagerMixin`` classes (MMLogger, MessageHub, Visualizer, ...), if loaded."""
    manager = sys.modules.get('mmengine.utils.manager')
    found, todo = [], [manager.ManagerMixin] if manager else []
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return found


@pytest.fixture(autouse=True)
def _mmengine_instances_end_with_their_test():
    """mmengine keeps one logger, message hub and visualizer per run name, and a runner's name
    is its start time to the second: a run started in the same second as one of an earlier
    test (in this process) would reuse that run's objects, log into its files and write into
    its tmp_path, which is gone once that test passed. What a test created goes when it ends,
    as it would with the process; module fixtures' runs were created before and stay."""
    before = {cls: set(cls._instance_dict) for cls in _managed_classes()}
    yield
    for cls in _managed_classes():
        for name in set(cls._instance_dict) - before.get(cls, set()):
            instance = cls._instance_dict.pop(name)
            for handler in list(getattr(instance, 'handlers', ())):
                instance.removeHandler(handler)
                handler.close()


_PARITY = {}


@pytest.fixture
def record_parity(record_property):
    """Record a case's (max abs, max rel) errors for the summary printed after the run. They
    travel in the test's report, so the summary also covers tests run by xdist's workers."""

    def record(case: str, abs_err: float, rel_err: float) -> None:
        record_property('parity', (case, abs_err, rel_err))

    return record


def pytest_runtest_logreport(report):
    for name, value in report.user_properties if report.when == 'call' else ():
        if name == 'parity':
            case, abs_err, rel_err = value
            family = case.split()[0]
            worst = _PARITY.get(family, (0.0, 0.0, 0))
            _PARITY[family] = (max(worst[0], abs_err), max(worst[1], rel_err), worst[2] + 1)


def pytest_terminal_summary(terminalreporter):
    if _PARITY:
        terminalreporter.section('parity with upstream features')
        for family, (abs_err, rel_err, n) in sorted(_PARITY.items()):
            terminalreporter.write_line(f'{family}: {n} feature maps, max abs error '
                                        f'{abs_err:.2e}, max relative error {rel_err:.2e}')
