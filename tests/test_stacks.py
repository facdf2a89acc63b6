"""Every config parses and builds where mmdet's and mmseg's own tools parse it, on both stacks:
before ``rmt_mm`` is imported (``custom_imports`` imports ``rmt_mm.plugin`` only after), with
nothing of rmt_mm running at interpreter start-up."""
import json
import subprocess
import sys
import textwrap
from importlib.metadata import distribution

import pytest

from helpers import REPO

SEG_ROOT = REPO / 'configs' / 'upernet_restv2_t_ade20k-512x512-160k.py'
DET_ROOT = REPO / 'configs' / 'maskrcnn_rmt_s_coco.py'

#: One fresh interpreter: what it has loaded at start-up, then (forked after importing mmengine's
#: Config, as mmseg's and mmdet's tools/train.py do first) each config parsed in a process of its
#: own. Each check prints one json line ``[name, outcome]``.
FRESH_INTERPRETER = textwrap.dedent("""
    import json, os, sys, traceback
    print(json.dumps(['start-up', sorted(m for m in sys.modules if m.startswith('rmt_mm'))]),
          flush=True)
    from mmengine.config import Config
    for name, config in CONFIGS.items():
        pid = os.fork()
        if pid == 0:
            try:
                before = [m for m in sys.modules if m.startswith('rmt_mm')]
                cfg = Config.fromfile(config)
                print(json.dumps([name, [before, cfg.default_scope, cfg.model.backbone.type,
                                         'rmt_mm.plugin' in sys.modules]]), flush=True)
            except BaseException:
                traceback.print_exc()
                os._exit(1)
            os._exit(0)
        assert os.waitpid(pid, 0)[1] == 0, name
""")


@pytest.fixture(scope='module')
def fresh_interpreter() -> dict:
    """``{check: outcome}`` of the interpreter above (the fork's mmdet prints a note of its own
    on stdout when its datasets package loads: only json lines count)."""
    configs = {'mmseg': str(SEG_ROOT), 'mmdet': str(DET_ROOT)}
    code = f'CONFIGS = {configs!r}\n' + FRESH_INTERPRETER
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=REPO,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(json.loads(line) for line in result.stdout.splitlines() if line.startswith('["'))


@pytest.mark.parametrize('scope', ['mmseg', 'mmdet'])
def test_configs_parse_before_rmt_mm_is_imported(fresh_interpreter, scope):
    """What mmseg's and mmdet's tools/train.py do first; ``custom_imports`` then imports the
    plugin."""
    backbone = 'ResTV2' if scope == 'mmseg' else 'RMT'
    assert fresh_interpreter[scope] == [[], scope, backbone, True]


def test_no_segmentation_config_names_the_mmseg_scope():
    """``mmseg::`` bases fail on the OneDL fork (its distribution is ``onedl-mmsegmentation``,
    mmengine looks for ``mmsegmentation``): the segmentation configs use the repository's own
    bases (tests/test_seg_configs.py compares them with mmseg's)."""
    offending = [str(p.relative_to(REPO)) for p in (REPO / 'configs').rglob('*.py')
                 if 'mmseg::' in p.read_text()]
    assert offending == []


def test_installation_runs_nothing_at_interpreter_start_up(fresh_interpreter):
    """No ``.pth`` file of rmt_mm's in site-packages beside the editable install's own, and a
    fresh interpreter has loaded no module of the package."""
    files = [str(f) for f in distribution('rmt_mm').files or () if str(f).endswith('.pth')]
    assert all(f.startswith('__editable__') for f in files), files
    assert fresh_interpreter['start-up'] == []
