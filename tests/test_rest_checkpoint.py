"""ResT/ResTv2 upstream checkpoints go through the same converter and ``init_cfg`` loader as
RMT: round trips reproduce the upstream detectron2 features, bad input gets one-line errors."""
import json

import pytest
import torch

from rmt_mm.checkpoints.backbone import load_backbone_checkpoint
from rmt_mm.errors import CheckpointError
from rmt_mm.models import ResT, ResTV2

from helpers import fixture_dir
from helpers.archs import REST_TINY, RESTV2_TINY
from helpers.tools import call_tool

#: The converter's ``--arch`` JSON of each fixture arch: the family and the arch dict.
ARCH_OPTIONS = {'v1': dict(REST_TINY, backbone='ResT'),
                'v2': dict(RESTV2_TINY, backbone='ResTV2')}
CLASSES = {'v1': ResT, 'v2': ResTV2}


def convert(src, dst, *args):
    """The converter tool in this process."""
    return call_tool('convert_imagenet_ckpt', src, dst, *args)


@pytest.mark.parametrize('version,file', [('v1', 'rest_v1_tiny_cls.pth'),
                                          ('v1', 'rest_v1_tiny_cls_2021_format.pth'),
                                          ('v2', 'rest_v2_tiny_cls.pth')])
def test_convert_then_init_cfg_reproduces_upstream_d2_features(tmp_path, version, file):
    fixtures = fixture_dir('rest')
    dst = tmp_path / 'converted.pth'
    result = convert(fixtures / file, dst, '--arch', json.dumps(ARCH_OPTIONS[version]))
    assert result.returncode == 0, result.stderr
    arch = {k: v for k, v in ARCH_OPTIONS[version].items() if k != 'backbone'}
    model = CLASSES[version](arch, init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    model.init_weights()
    exp = torch.load(fixtures / f'rest_{version}_tiny_expected.pt')
    with torch.no_grad():
        outs = model.eval()(exp['inputs']['x_64x96'])
    for out, name in zip(outs, ['stage1', 'stage2', 'stage3', 'stage4']):
        torch.testing.assert_close(out, exp['d2_backbone_feats']['x_64x96'][name],
                                   rtol=1e-4, atol=2e-4)


def test_ema_weights_are_selectable(tmp_path):
    fixtures = fixture_dir('rest')
    raw, ema = tmp_path / 'raw.pth', tmp_path / 'ema.pth'
    for dst, extra in ((raw, []), (ema, ['--ema'])):
        assert convert(fixtures / 'rest_v2_tiny_cls.pth', dst, '--arch',
                       json.dumps(ARCH_OPTIONS['v2']), *extra).returncode == 0
    source = torch.load(fixtures / 'rest_v2_tiny_cls.pth', weights_only=False)
    key = 'stage3.0.attn.q.weight'
    assert torch.equal(torch.load(raw)['state_dict'][key], source['model'][key])
    assert torch.equal(torch.load(ema)['state_dict'][key], source['model_ema'][key])


def test_wrong_arch_names_both(tmp_path):
    result = convert(fixture_dir('rest') / 'rest_v1_tiny_cls.pth', tmp_path / 'o.pth',
                     '--arch', 'rest_small')
    assert result.returncode == 1
    assert 'checkpoint is a custom ResT (embed_dims [16, 32, 64, 128]' in result.stderr
    assert 'config asks for ResT-small (embed_dims [64, 128, 256, 512]' in result.stderr


def test_rmt_checkpoint_into_rest_is_refused():
    model = ResTV2('tiny')
    with pytest.raises(CheckpointError, match='no key of the checkpoint matches the ResTV2'):
        load_backbone_checkpoint(model, str(fixture_dir('rmt') /
                                            'tiny_c1100_cls_deit_format.pth'))


def test_truncated_rest_checkpoint(tmp_path):
    data = (fixture_dir('rest') / 'rest_v2_tiny_cls.pth').read_bytes()
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(data[:1000])
    with pytest.raises(CheckpointError, match='corrupt or truncated'):
        load_backbone_checkpoint(ResTV2('tiny'), str(bad))
