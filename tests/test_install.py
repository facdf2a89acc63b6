"""Installing rmt_mm leaves the user's stack alone, the set-up installs the pinned stack, and
the declared floors are the versions CI runs.

The dry runs ask pip what ``pip install <repo>`` would do to this very environment, offline
(``--no-index``, no pip configuration): anything it would have to add, upgrade or downgrade
either shows up in the report or, offline, fails to resolve. Both make the test fail.
"""
import json
import os
import re
import subprocess
import sys
from importlib.metadata import metadata, requires, version
from typing import Dict

import pytest

from helpers import REPO
from helpers.stacks import STACKS, installed_stack, stack_pins


def dry_run(target: str, report) -> dict:
    env = dict(os.environ, PIP_CONFIG_FILE=os.devnull)  # no extra indexes, links, constraints
    proc = subprocess.run(
        [sys.executable, '-m', 'pip', 'install', '--dry-run', '--no-index', '--no-build-isolation',
         '--disable-pip-version-check', '--quiet', '--report', str(report), target],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, f'pip install --dry-run {target} failed:\n{proc.stderr[-3000:]}'
    return json.loads(report.read_text())


@pytest.mark.slow
def test_installing_changes_nothing_but_rmt_mm(tmp_path):
    """With the ``test`` extra, whose resolution includes the core requirements: what the core
    install would add, upgrade or downgrade, this one would too."""
    report = dry_run(f'{REPO}[test]', tmp_path / 'report.json')
    # Names as pip normalises them (the build backend may write rmt_mm or rmt-mm).
    planned = {re.sub(r'[-_.]+', '-', item['metadata']['name']).lower():
               item['metadata']['version'] for item in report['install']}
    assert planned == {'rmt-mm': version('rmt_mm')}, installed_stack()


def core_requirements() -> Dict[str, str]:
    """``{distribution: specifier}`` of what rmt_mm requires outside its extras."""
    reqs = [r for r in requires('rmt_mm') if 'extra ==' not in r]
    return dict(re.fullmatch(r'([A-Za-z0-9_.-]+)\s*(.*)', r).groups() for r in reqs)


def test_core_requires_no_openmmlab_distribution():
    """``mmcv``/``mmengine`` here would install a second copy into the OneDL stack."""
    assert sorted(core_requirements()) == ['numpy', 'torch']


def test_declared_floors_are_the_versions_ci_runs():
    """The plain-PyTorch check runs exactly the floors (scripts/check_plain_pytorch.sh), and
    every stack's pins meet them."""
    script = (REPO / 'scripts' / 'check_plain_pytorch.sh').read_text()
    floors = dict(core_requirements(), python=metadata('rmt_mm')['Requires-Python'])
    assert floors == {'torch': '>=2.1', 'numpy': '>=1.24', 'python': '>=3.9'}
    assert 'torch==2.1.2 numpy==1.24.4' in script and 'python3.9' in script
    for stack in STACKS:
        pins = stack_pins(stack)
        assert release(pins['torch']) >= (2, 1) and release(pins['numpy']) >= (1, 24), stack


def release(version_string: str) -> tuple:
    return tuple(int(part) for part in version_string.split('.')[:2])


def test_environment_is_the_pinned_stack():
    stack = installed_stack()
    pins = stack_pins(stack)
    assert {'torch', 'numpy'} <= set(pins)
    installed = {dist: version(dist) for dist in pins}
    # torch's local version (+cpu, +cu121) names the build, not the release.
    assert {dist: v.split('+')[0] for dist, v in installed.items()} == pins, stack
