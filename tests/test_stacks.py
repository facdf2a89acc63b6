"""Every config parses and builds where mmdet's and mmseg's own tools parse it, on both stacks:
before ``rmt_mm`` is imported (``custom_imports`` imports ``rmt_mm.plugin`` only after), with
nothing of rmt_mm running at interpreter start-up."""
import subprocess
import sys
import textwrap
from importlib.metadata import distribution

import pytest

from helpers import REPO

SEG_ROOT = REPO / 'configs' / 'upernet_restv2_t_ade20k-512x512-160k.py'


def python(*snippets: str) -> subprocess.CompletedProcess:
    code = '\n'.join(textwrap.dedent(s) for s in snippets)
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=REPO,
                          timeout=300)


def last_line(result: subprocess.CompletedProcess) -> list:
    """The words of what the snippet printed last (the fork's mmdet prints a note of its own on
    stdout when its datasets package loads)."""
    return result.stdout.strip().splitlines()[-1].split()


@pytest.mark.parametrize('config', [SEG_ROOT, REPO / 'configs' / 'maskrcnn_rmt_s_coco.py'],
                         ids=['mmseg', 'mmdet'])
def test_configs_parse_before_rmt_mm_is_imported(config):
    """What mmseg's and mmdet's tools/train.py do first; ``custom_imports`` then imports the
    plugin."""
    result = python(f"""
        import sys
        from mmengine.config import Config
        assert not [m for m in sys.modules if m.startswith('rmt_mm')]
        cfg = Config.fromfile({str(config)!r})
        print(cfg.default_scope, cfg.model.backbone.type, 'rmt_mm.plugin' in sys.modules)
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    scope = 'mmseg' if config == SEG_ROOT else 'mmdet'
    backbone = 'ResTV2' if config == SEG_ROOT else 'RMT'
    assert last_line(result) == [scope, backbone, 'True']


def test_no_segmentation_config_names_the_mmseg_scope():
    """``mmseg::`` bases fail on the OneDL fork (its distribution is ``onedl-mmsegmentation``,
    mmengine looks for ``mmsegmentation``): the segmentation configs use the repository's own
    bases (tests/test_seg_configs.py compares them with mmseg's)."""
    offending = [str(p.relative_to(REPO)) for p in (REPO / 'configs').rglob('*.py')
                 if 'mmseg::' in p.read_text()]
    assert offending == []


def test_installation_runs_nothing_at_interpreter_start_up():
    """No ``.pth`` file of rmt_mm's in site-packages beside the editable install's own, and a
    fresh interpreter has loaded no module of the package."""
    files = [str(f) for f in distribution('rmt_mm').files or () if str(f).endswith('.pth')]
    assert all(f.startswith('__editable__') for f in files), files
    result = python("""
        import sys
        print(' '.join(sorted(m for m in sys.modules if m.startswith('rmt_mm'))) or 'none')
    """)
    assert last_line(result) == ['none'], result.stdout
