"""Conversion of upstream checkpoints, safe unpickling and one-line errors for bad input."""
import argparse
import pickle

import pytest
import torch

from rmt_mm.checkpoints.backbone import load_backbone_checkpoint, read_checkpoint
from rmt_mm.checkpoints.convert import infer_arch
from rmt_mm.checkpoints.reading import safe_load
from rmt_mm.errors import CheckpointError
from rmt_mm.models import RMT

from helpers import REPO
from helpers.bad_files import GetattrChain, RunsCode
from helpers.tools import call_tool, run_tool

#: Whether plain ``torch.load`` defaults to ``weights_only=True`` (torch >= 2.6).
TORCH_LOADS_WEIGHTS_ONLY = tuple(int(p) for p in torch.__version__.split('.')[:2]) >= (2, 6)


def convert(*args):
    """The converter tool in this process."""
    return call_tool('convert_imagenet_ckpt', *args)


@pytest.fixture
def mini(rmt_manifest):
    return rmt_manifest['tiny_c1110/config']


@pytest.mark.parametrize('fmt,ema,key', [
    ('cls_deit_format', False, 'model'),
    ('cls_deit_format', True, 'model_ema'),
    ('cls_tokenlabel_format', False, 'state_dict'),
    ('cls_tokenlabel_format', True, 'state_dict_ema'),
])
def test_convert_round_trip(tmp_path, rmt_fixtures, mini, fmt, ema, key):
    import json
    src = rmt_fixtures / f'tiny_c1110_{fmt}.pth'
    dst = tmp_path / 'converted.pth'
    result = convert(src, dst, '--arch', json.dumps(mini), *(['--ema'] if ema else []))
    assert result.returncode == 0, result.stderr
    # The converted file is plain data: it loads with weights_only and no allow-list.
    converted = torch.load(dst, weights_only=True)
    source = torch.load(src, weights_only=False)[key]
    kept = {k: v for k, v in source.items() if k.split('.')[0] not in
            ('proj', 'norm', 'head', 'aux_head')}
    assert converted['state_dict'].keys() == kept.keys()
    assert all(torch.equal(converted['state_dict'][k], v) for k, v in kept.items())
    # It loads through init_cfg with nothing missing but the detection-only output norms.
    model = RMT(arch=mini, init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    model.init_weights()
    own = model.state_dict()
    assert {k for k in own if k not in kept} == {
        f'extra_norms.{i}.{p}' for i in range(4) for p in ('weight', 'bias')}
    assert all(torch.equal(own[k], v) for k, v in kept.items())


def test_arch_is_inferred_for_released_sizes(tmp_path):
    src, dst = tmp_path / 'rmt_s.pth', tmp_path / 'out.pth'
    weights = RMT(arch='s').state_dict()
    weights = {k: v for k, v in weights.items() if not k.startswith('extra_norms')}
    weights.update({'head.weight': torch.zeros(1000, 1024), 'proj.weight': torch.zeros(1024, 512)})
    torch.save({'model': weights, 'args': argparse.Namespace(model='RMT_S')}, src)
    result = convert(src, dst)
    assert result.returncode == 0, result.stderr
    assert 'RMT-S' in result.stdout
    assert torch.load(dst)['meta']['arch'] == 'small'


def test_wrong_arch_is_named(tmp_path):
    src = tmp_path / 'rmt_b.pth'
    torch.save({'model': RMT(arch='b').state_dict()}, src)
    # In a real process: exactly what reaches the user's terminal.
    result = run_tool([REPO / 'tools' / 'convert_imagenet_ckpt.py', src, tmp_path / 'out.pth',
                       '--arch', 's'], check=False, show_warnings=True)
    assert result.returncode == 1
    assert result.stderr.startswith(f'error: {src}: checkpoint is RMT-B (embed_dims [80, 160, '
                                    '320, 512]')
    assert 'config asks for RMT-S' in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / 'out.pth').exists()


def test_custom_arch_cannot_be_inferred(rmt_fixtures, tmp_path):
    result = convert(rmt_fixtures / 'tiny_c1100_cls_deit_format.pth', tmp_path / 'o.pth')
    assert result.returncode == 1 and 'pass --arch' in result.stderr


def test_config_arch_mismatch_in_init_cfg(rmt_fixtures):
    path = rmt_fixtures / 'tiny_c1100_cls_deit_format.pth'
    model = RMT(arch='s', init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    before = model.state_dict()['layers.0.blocks.0.ffn.fc1.weight'].clone()
    with pytest.raises(CheckpointError, match=rf'^{path}: checkpoint is a custom RMT .* config '
                       r'asks for RMT-S'):
        model.init_weights()
    # All-or-nothing: nothing was loaded.
    assert torch.equal(before, model.state_dict()['layers.0.blocks.0.ffn.fc1.weight'])


def test_hyperparameter_buffers_are_checked(rmt_fixtures, mini):
    model = RMT(arch={**mini, 'heads_ranges': [3, 4, 6, 6]})
    with pytest.raises(CheckpointError, match='layers.0.Relpos.decay differs'):
        load_backbone_checkpoint(model, str(rmt_fixtures / 'tiny_c1110_cls_deit_format.pth'))


def test_detector_checkpoint_prefix_is_stripped(rmt_fixtures, mini):
    sd, layout = read_checkpoint(str(rmt_fixtures / 'tiny_c1110_upstream_mmdet2_maskrcnn.pth'))
    assert layout == 'state_dict' and any(k.startswith('neck.') for k in sd)
    model = RMT(arch=mini)
    load_backbone_checkpoint(model, str(rmt_fixtures / 'tiny_c1110_upstream_mmdet2_maskrcnn.pth'))
    assert torch.equal(model.state_dict()['extra_norms.2.weight'],
                       sd['backbone.extra_norms.2.weight'])


def test_truncated_file(rmt_fixtures, tmp_path):
    data = (rmt_fixtures / 'tiny_c1100_cls_deit_format.pth').read_bytes()
    bad = tmp_path / 'truncated.pth'
    bad.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match='corrupt or truncated'):
        safe_load(str(bad))
    result = convert(bad, tmp_path / 'o.pth', '--arch', 't')
    assert result.returncode == 1 and 'corrupt or truncated' in result.stderr


def test_missing_file_and_unknown_layout(tmp_path):
    with pytest.raises(CheckpointError, match='checkpoint not found'):
        safe_load(str(tmp_path / 'nope.pth'))
    odd = tmp_path / 'odd.pth'
    torch.save({'weights': {'a': torch.zeros(1)}, 'epoch': 3}, odd)
    with pytest.raises(CheckpointError, match='unknown checkpoint layout'):
        read_checkpoint(str(odd))


def test_checkpoint_of_another_network(tmp_path):
    other = tmp_path / 'resnet.pth'
    torch.save({'state_dict': {'conv1.weight': torch.zeros(64, 3, 7, 7),
                               'layer1.0.bn1.weight': torch.zeros(64)}}, other)
    with pytest.raises(CheckpointError, match='no key of the checkpoint matches the RMT'):
        load_backbone_checkpoint(RMT(arch='t'), str(other))


def test_ema_requested_but_absent(rmt_fixtures, mini):
    with pytest.raises(CheckpointError, match='has no EMA weights'):
        load_backbone_checkpoint(
            RMT(arch=mini), str(rmt_fixtures / 'tiny_c1110_upstream_mmdet2_maskrcnn.pth'),
            use_ema=True)


@pytest.mark.parametrize('payload', [RunsCode, GetattrChain])
def test_code_in_pickle_is_refused_without_running(tmp_path, payload):
    marker = tmp_path / 'pwned'
    evil = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'x': torch.zeros(1)}, 'meta': payload(marker)}, evil)
    with pytest.raises(CheckpointError, match=f'^{evil}: refused as unsafe: it references '):
        safe_load(str(evil))
    assert not marker.exists()


@pytest.mark.skipif(not TORCH_LOADS_WEIGHTS_ONLY,
                    reason='plain torch.load reads weights-only by default from torch 2.6 on')
@pytest.mark.parametrize('payload', [RunsCode, GetattrChain])
def test_plain_torch_load_refuses_code_too(tmp_path, payload):
    # mmengine calls torch.load without weights_only: from torch 2.6 that refuses code as well.
    marker = tmp_path / 'pwned'
    evil = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'x': torch.zeros(1)}, 'meta': payload(marker)}, evil)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(evil)
    assert not marker.exists()


def test_upstream_namespace_is_allow_listed(rmt_fixtures):
    ckpt = safe_load(str(rmt_fixtures / 'tiny_c1100_cls_deit_format.pth'))
    assert isinstance(ckpt['args'], argparse.Namespace)


def test_infer_arch_for_every_released_size():
    for name in ('tiny', 'small', 'base', 'large'):
        with torch.device('meta'):
            weights = RMT(arch=name).state_dict()
        assert infer_arch(RMT, weights) == name


def test_history_buffer_pickles_without_callables(tmp_path):
    from mmengine.logging import HistoryBuffer
    buf = HistoryBuffer()
    buf.update(2.0)
    path = tmp_path / 'hb.pth'
    torch.save({'hb': buf}, path)
    assert b'getattr' not in path.read_bytes()
    loaded = safe_load(str(path))['hb']
    assert loaded.mean() == 2.0 and loaded.statistics('max') == 2.0
