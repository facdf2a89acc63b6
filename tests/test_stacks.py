"""``mmseg::``/``mmdet::`` base configs resolve on both stacks before ``rmt_mm`` is imported, as
mmdet's and mmseg's own tools parse them (see _rmt_mm_scopes.py for the OneDL fork's problem)."""
import subprocess
import sys
import textwrap

import pytest

import _rmt_mm_scopes

from helpers import REPO
from helpers.stacks import installed_stack

SEG_ROOT = REPO / 'configs' / 'upernet_restv2_t_ade20k-512x512-160k.py'
PROVIDER = dict(openmmlab=dict(mmseg='mmsegmentation', mmdet='mmdet'),
                onedl=dict(mmseg='onedl-mmsegmentation', mmdet='onedl-mmdetection'))


def python(*snippets: str) -> subprocess.CompletedProcess:
    code = '\n'.join(textwrap.dedent(s) for s in snippets)
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=REPO,
                          timeout=300)


def last_line(result: subprocess.CompletedProcess) -> list:
    """The words of what the snippet printed last (the fork's mmdet prints a note of its own on
    stdout when its datasets package loads)."""
    return result.stdout.strip().splitlines()[-1].split()


def test_redirect_scopes_finds_the_installed_distribution():
    providers = PROVIDER[installed_stack()]
    mapping = dict(mmseg='no-such-distribution', mmdet='mmdet-gone', no_such_module_x='x-dist')
    changed = _rmt_mm_scopes.redirect_scopes(mapping)
    assert changed == providers
    assert mapping == dict(providers, no_such_module_x='x-dist')


def test_redirect_scopes_keeps_installed_distributions():
    mapping = {'mmseg': PROVIDER[installed_stack()]['mmseg']}
    assert _rmt_mm_scopes.redirect_scopes(mapping) == {}


def test_mmengine_maps_scopes_to_installed_distributions():
    from mmengine.config.utils import MODULE2PACKAGE
    assert MODULE2PACKAGE['mmseg'] == PROVIDER[installed_stack()]['mmseg']


@pytest.mark.parametrize('config', [SEG_ROOT, REPO / 'configs' / 'maskrcnn_rmt_s_coco.py'],
                         ids=['mmseg', 'mmdet'])
def test_bases_resolve_before_rmt_mm_is_imported(config):
    """What mmseg's tools/train.py does first; ``custom_imports`` imports rmt_mm only after."""
    result = python(f"""
        import sys
        from mmengine.config import Config
        assert 'rmt_mm' not in sys.modules
        cfg = Config.fromfile({str(config)!r})
        print(cfg.default_scope, cfg.model.backbone.type, 'rmt_mm' in sys.modules)
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    scope = 'mmseg' if config == SEG_ROOT else 'mmdet'
    backbone = 'ResTV2' if config == SEG_ROOT else 'RMT'
    assert last_line(result) == [scope, backbone, 'True']


HOOK_REMOVED = """
    import sys
    sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != '_RedirectOnImport']
"""


@pytest.mark.skipif(installed_stack() != 'onedl', reason='the OneDL fork only')
def test_fork_fails_without_the_startup_hook():
    """The cause: without the hook, the fork's mmengine looks for a distribution named
    ``mmsegmentation``, which it does not have."""
    result = python(HOOK_REMOVED, f"""
        from mmengine.config import Config
        Config.fromfile({str(SEG_ROOT)!r})
    """)
    assert result.returncode != 0
    assert 'mmsegmentation is not installed' in result.stderr


@pytest.mark.skipif(installed_stack() != 'onedl', reason='the OneDL fork only')
def test_importing_rmt_mm_maps_scopes_without_the_startup_hook():
    """For interpreters that skip site-packages' .pth files."""
    result = python(HOOK_REMOVED, f"""
        import rmt_mm
        from mmengine.config import Config
        print(Config.fromfile({str(SEG_ROOT)!r}).model.backbone.type)
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    assert last_line(result) == ['ResTV2']
