"""Installing rmt_mm leaves the user's stack alone, and the set-up installs the pinned stack.

The dry runs ask pip what ``pip install <repo>`` would do to this very environment, offline
(``--no-index``, no pip configuration): anything it would have to add, upgrade or downgrade
either shows up in the report or, offline, fails to resolve. Both make the test fail.
"""
import json
import os
import re
import subprocess
import sys
from importlib.metadata import version

import pytest
import tomllib

from helpers import REPO
from helpers.stacks import STACKS, installed_stack, stack_pins

PYPROJECT = tomllib.loads((REPO / 'pyproject.toml').read_text())


def dry_run(target: str, report) -> dict:
    env = dict(os.environ, PIP_CONFIG_FILE=os.devnull)  # no extra indexes, links, constraints
    proc = subprocess.run(
        [sys.executable, '-m', 'pip', 'install', '--dry-run', '--no-index', '--no-build-isolation',
         '--disable-pip-version-check', '--quiet', '--report', str(report), target],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, f'pip install --dry-run {target} failed:\n{proc.stderr[-3000:]}'
    return json.loads(report.read_text())


@pytest.mark.parametrize('extras', ['', '[{stack},test]'], ids=['core', 'stack-extra'])
@pytest.mark.slow
def test_installing_changes_nothing_but_rmt_mm(tmp_path, extras):
    report = dry_run(f'{REPO}{extras.format(stack=installed_stack())}', tmp_path / 'report.json')
    planned = {item['metadata']['name']: item['metadata']['version'] for item in report['install']}
    assert planned == {'rmt_mm': PYPROJECT['project']['version']}


def test_core_requires_no_openmmlab_distribution():
    """``mmcv``/``mmengine`` here would install a second copy into the OneDL stack."""
    names = [re.match(r'[A-Za-z0-9_.-]+', req)[0].lower()
             for req in PYPROJECT['project']['dependencies']]
    assert names == ['torch', 'numpy']


def test_environment_is_the_pinned_stack():
    stack = installed_stack()
    pins = stack_pins(stack)
    assert {'torch', 'numpy'} <= set(pins)
    installed = {dist: version(dist) for dist in pins}
    # torch's local version (+cpu) names the build, not the release.
    assert {dist: v.split('+')[0] for dist, v in installed.items()} == pins, stack


@pytest.mark.parametrize('stack', STACKS)
def test_stack_extra_pins_what_the_setup_pins(stack):
    extra = PYPROJECT['project']['optional-dependencies'][stack]
    pinned = dict(req.lower().split('==') for req in extra if '==' in req)
    assert pinned and all(stack_pins(stack)[dist] == v for dist, v in pinned.items())
