"""What the tests share. Here: the repository's paths and the upstream parity fixtures. In the
submodules: running the tools (``tools``), the tiny backbone archs (``archs``), detection and
segmentation models and data (``det``, ``seg``), which test module checks which config
(``configs``), unreadable checkpoint files (``bad_files``), the installed stack (``stacks``) and a
toy training run (``toy_runner``).

``conftest.py`` registers this package for pytest's assertion rewriting, so plain asserts in the
helpers report their values as the tests' own do.
"""
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / 'configs'
FIXTURES = Path(os.environ.get('RMT_MM_FIXTURES', REPO.parent / 'shared' / 'fixtures'))


def fixture_dir(family: str) -> Path:
    """Upstream parity data of ``family`` (``rmt``, ``rest``); skipped where absent, failed where
    CI requires it (``RMT_MM_REQUIRE_FIXTURES=1``)."""
    path = FIXTURES / family
    if not path.is_dir():
        if os.environ.get('RMT_MM_REQUIRE_FIXTURES') == '1':
            pytest.fail(f'parity fixtures not found at {path}')
        pytest.skip(f'parity fixtures not found at {path} (set RMT_MM_FIXTURES)')
    return path


@contextmanager
def one_intra_op_thread() -> Iterator[None]:
    """torch on one intra-op thread: faster for tiny tensors and immune to contention on shared
    CPUs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
