"""Unreadable and unsafe checkpoint files through every entry point that accepts one: one line
naming the file and the problem, nothing built or written, no payload run; good files load.

Every entry point reads through ``safe_load``: each kind of bad file is checked there, and each
entry point (Python API and tool) once, with a kind of its own."""
import re
import subprocess
import sys

import pytest
import torch
from mmengine.runner import load_checkpoint

from rmt_mm.checkpoints.backbone import load_backbone_checkpoint
from rmt_mm.checkpoints.model import load_model_checkpoint
from rmt_mm.checkpoints.reading import safe_load
from rmt_mm.datasets.shapes import make_shapes_coco
from rmt_mm.errors import CheckpointError
from rmt_mm.models import RMT

from helpers import REPO
from helpers.archs import RMT_TOY_CLASSIFIER
from helpers.bad_files import UNREADABLE, write_unreadable
from helpers.det import DEMO_CONFIG, data_options
from helpers.tools import assert_one_line_error, tool_main

KINDS = sorted(UNREADABLE)


@pytest.fixture(scope='module')
def good(tmp_path_factory):
    """A backbone checkpoint (the converter's layout) of the toy arch."""
    path = tmp_path_factory.mktemp('good') / 'rmt_mini.pth'
    torch.save({'state_dict': RMT(arch=RMT_TOY_CLASSIFIER).state_dict(), 'meta': {}}, path)
    return path


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp('shapes')
    make_shapes_coco(str(root), num_train=2, num_val=2, seed=1, size_range=(64, 80))
    return str(root)


def _unchanged(model, before):
    return all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def _check_refusal(entry, path, expected):
    with pytest.raises(CheckpointError) as info:
        entry(path)
    message = str(info.value)
    assert message.startswith(f'{path}: {expected}') and '\n' not in message, message
    assert 'weights_only' not in message and 'trust' not in message


# ---------------------------------------------------------------------------- Python API
def _api_safe_load(path):
    safe_load(str(path))


def _api_backbone_loader(path):
    load_backbone_checkpoint(RMT(arch=RMT_TOY_CLASSIFIER), str(path))


def _api_init_cfg(path):
    RMT(arch=RMT_TOY_CLASSIFIER,
        init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()


def _api_model_loader(path):
    load_model_checkpoint(RMT(arch=RMT_TOY_CLASSIFIER), str(path))


def _api_mmengine_loader(path):  # any mmengine path: load_from, resume, other modules' init_cfg
    load_checkpoint(RMT(arch=RMT_TOY_CLASSIFIER), str(path))


@pytest.mark.parametrize('kind', KINDS)
def test_reader_refuses(kind, good, tmp_path):
    """Each kind of bad file through the reader every entry point uses."""
    path, marker, expected = write_unreadable(kind, good, tmp_path)
    _check_refusal(_api_safe_load, path, expected)
    assert not marker.exists(), 'a code payload ran'


#: Each loader of the Python API with a kind of bad file of its own.
API_ENTRIES = [(_api_backbone_loader, 'tensor data short'), (_api_init_cfg, 'code in pickle'),
               (_api_model_loader, 'numpy object array'),
               (_api_mmengine_loader, 'getattr in pickle')]


@pytest.mark.parametrize('entry,kind', API_ENTRIES, ids=[e.__name__[5:] for e, _ in API_ENTRIES])
def test_python_api(entry, kind, good, tmp_path):
    path, marker, expected = write_unreadable(kind, good, tmp_path)
    _check_refusal(entry, path, expected)
    assert not marker.exists(), 'a code payload ran'


def test_loader_touches_nothing_when_refusing(good, tmp_path):
    path, _, _ = write_unreadable('tensor data short', good, tmp_path)
    model = RMT(arch=RMT_TOY_CLASSIFIER)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError):
        load_backbone_checkpoint(model, str(path))
    assert _unchanged(model, before)


# ---------------------------------------------------------------------------- tools
def _run(tool, argv, capsys):
    code = tool_main(tool)(argv)
    return code, capsys.readouterr().err


#: Each tool entry point with a kind of bad file of its own.
TOOL_KINDS = {'test.py': 'truncated', 'train.py --resume': 'code in pickle',
              'train.py load_from': 'numpy object array', 'train.py init_cfg': 'plain pickle',
              'demo.py': 'legacy, truncated', 'converter': 'getattr in pickle'}


@pytest.mark.parametrize('run', sorted(TOOL_KINDS))
def test_tools(run, good, shapes, tmp_path, capsys):
    """test.py CKPT, train.py --resume PATH / load_from / init_cfg, demo.py and the converter,
    each with a bad file: each stops before building anything, writes nothing."""
    path, marker, expected = write_unreadable(TOOL_KINDS[run], good, tmp_path)
    work = tmp_path / 'work'
    base = [str(DEMO_CONFIG), '--work-dir', str(work)]
    opts = ['--cfg-options', *data_options(shapes)]
    init_cfg = tmp_path / 'pretrained_cfg.py'
    init_cfg.write_text(f"_base_ = '{DEMO_CONFIG}'\nmodel = dict(backbone=dict(init_cfg=dict("
                        f"_delete_=True, type='Pretrained', checkpoint='{path}')))\n")
    image = f'{shapes}/val/000001.png'
    runs = {
        'test.py': ('test', [str(DEMO_CONFIG), str(path), '--work-dir', str(work), '--out',
                             str(tmp_path / 'p.pkl'), *opts], 'load_from: '),
        'train.py --resume': ('train', [*base, '--resume', str(path), *opts], 'load_from: '),
        'train.py load_from': ('train', [*base, *opts, f'load_from={path}'], 'load_from: '),
        'train.py init_cfg': ('train', [str(init_cfg), '--work-dir', str(work), *opts],
                              'model.backbone.init_cfg.checkpoint: '),
        'demo.py': ('demo', [image, str(DEMO_CONFIG), str(path), '--out',
                             str(tmp_path / 'out.png')], ''),
        'converter': ('convert_imagenet_ckpt', [str(path), str(tmp_path / 'dst.pth')], ''),
    }
    tool, argv, prefix = runs[run]
    code, err = _run(tool, argv, capsys)
    assert_one_line_error(code, err, f'{prefix}{path}: {expected}')
    assert not work.exists()  # nothing was built
    assert not any(tmp_path.glob('p.pkl')) and not any(tmp_path.glob('out.png'))
    assert not (tmp_path / 'dst.pth').exists() and not marker.exists()


def test_debug_shows_the_traceback(good, shapes, tmp_path, monkeypatch):
    path, _, _ = write_unreadable('truncated', good, tmp_path)
    argv = [str(DEMO_CONFIG), str(path), '--cfg-options', *data_options(shapes)]
    with pytest.raises(CheckpointError):
        tool_main('test')([*argv, '--debug'])
    monkeypatch.setenv('RMT_MM_DEBUG', '1')
    with pytest.raises(CheckpointError):
        tool_main('test')(argv)


@pytest.mark.slow
def test_real_process_prints_one_line(good, shapes, tmp_path):
    """As a user runs it: exit code 1 and one error line on stderr; nothing else there but the
    installed stack's own warnings (none of ours, no traceback)."""
    path, marker, expected = write_unreadable('code in pickle', good, tmp_path)
    proc = subprocess.run([sys.executable, 'tools/test.py', str(DEMO_CONFIG), str(path),
                           '--cfg-options', *data_options(shapes)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    *others, last = proc.stderr.strip().splitlines()
    assert last == f'error: load_from: {path}: {expected}, which is not plain data (only ' \
                   'tensors, numbers, strings and containers of them are loaded)'
    assert all(re.match(r'^\S+:\d+: \w*Warning: |^  ', line) for line in others), others
    assert 'pkg_resources' not in proc.stderr and not marker.exists()


# ---------------------------------------------------------------------------- controls
def test_good_files_still_load(good, tmp_path):
    legacy = tmp_path / 'legacy.pth'
    torch.save(torch.load(good, weights_only=True), legacy, _use_new_zipfile_serialization=False)
    for path in (good, legacy):
        model = RMT(arch=RMT_TOY_CLASSIFIER)
        load_backbone_checkpoint(model, str(path))
        assert all(torch.equal(v, safe_load(str(good))['state_dict'][k])
                   for k, v in model.state_dict().items())
        load_model_checkpoint(RMT(arch=RMT_TOY_CLASSIFIER), str(path))
        load_checkpoint(RMT(arch=RMT_TOY_CLASSIFIER), str(path))
