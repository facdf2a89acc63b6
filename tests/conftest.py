import json
import os
from pathlib import Path

import pytest
import torch

import rmt_mm  # noqa: F401  (installs safe loading and registers the backbones)

# Plain asserts in the shared helpers report their values too (must precede their import).
pytest.register_assert_rewrite('det_utils', 'seg_utils')

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get('RMT_MM_FIXTURES', REPO.parent / 'shared' / 'fixtures'))


def fixture_dir(family: str) -> Path:
    """Upstream parity data; CI sets RMT_MM_REQUIRE_FIXTURES=1 so absence fails loudly."""
    path = FIXTURES / family
    if not path.is_dir():
        if os.environ.get('RMT_MM_REQUIRE_FIXTURES') == '1':
            pytest.fail(f'parity fixtures not found at {path}')
        pytest.skip(f'parity fixtures not found at {path} (set RMT_MM_FIXTURES)')
    return path


@pytest.fixture(scope='session')
def rmt_fixtures() -> Path:
    return fixture_dir('rmt')


@pytest.fixture(scope='session')
def rmt_manifest(rmt_fixtures) -> dict:
    return json.loads((rmt_fixtures / 'manifest.json').read_text())


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: end-to-end tool runs (deselect with -m "not slow")')


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


_PARITY = {}


@pytest.fixture(scope='session')
def record_parity():
    """Collect (max abs, max rel) errors per case for the summary printed after the run."""

    def record(case: str, abs_err: float, rel_err: float) -> None:
        family = case.split()[0]
        worst = _PARITY.get(family, (0.0, 0.0, 0))
        _PARITY[family] = (max(worst[0], abs_err), max(worst[1], rel_err), worst[2] + 1)

    return record


def pytest_terminal_summary(terminalreporter):
    if _PARITY:
        terminalreporter.section('parity with upstream features')
        for family, (abs_err, rel_err, n) in sorted(_PARITY.items()):
            terminalreporter.write_line(f'{family}: {n} feature maps, max abs error '
                                        f'{abs_err:.2e}, max relative error {rel_err:.2e}')
