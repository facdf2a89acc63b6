"""The backbones in a plain PyTorch project: what works with torch and numpy alone.

``scripts/check_plain_pytorch.sh`` runs this file (with the model and kernel tests) in an
environment of the declared floors (Python 3.9, torch 2.1, numpy 1.24) without mmengine, mmcv,
mmdet or mmseg, and sets ``RMT_MM_PLAIN=1`` so that their absence is checked too. Elsewhere the
same checks run beside the OpenMMLab stack.
"""
import json
import os
from importlib.util import find_spec

import pytest
import torch

from rmt_mm.checkpoints.convert import convert_checkpoint
from rmt_mm.checkpoints.reading import safe_load
from rmt_mm.errors import CheckpointError
from rmt_mm.models import FAMILIES, RMT
from rmt_mm.models.layers import build_norm

from helpers.archs import build_tiny
from helpers.bad_files import RunsCode

OPENMMLAB = ('mmengine', 'mmcv', 'mmdet', 'mmseg')


@pytest.mark.skipif(os.environ.get('RMT_MM_PLAIN') != '1', reason='the plain environment only')
def test_no_openmmlab_package_is_installed():
    assert [name for name in OPENMMLAB if find_spec(name)] == []


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_every_family_trains_a_step(family):
    model = build_tiny(FAMILIES[family], drop_path_rate=0.1)
    outs = model.train()(torch.randn(2, 3, 45, 61))
    sum(o.mean() for o in outs).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_converted_checkpoint_loads_through_init_cfg(rmt_fixtures, rmt_manifest, tmp_path):
    converted = tmp_path / 'rmt_in1k.pth'
    arch = rmt_manifest['tiny_c1100/config']
    convert_checkpoint(str(rmt_fixtures / 'tiny_c1100_cls_deit_format.pth'), str(converted),
                       arch=json.dumps(arch))
    model = RMT(arch=arch, init_cfg=dict(type='Pretrained', checkpoint=str(converted)))
    model.init_weights()
    source = safe_load(str(rmt_fixtures / 'tiny_c1100_cls_deit_format.pth'))['model']
    assert torch.equal(model.state_dict()['layers.0.blocks.0.ffn.fc1.weight'],
                       source['layers.0.blocks.0.ffn.fc1.weight'])


def test_code_in_a_checkpoint_is_refused_as_unsafe(tmp_path):
    marker, evil = tmp_path / 'ran', tmp_path / 'evil.pth'
    torch.save({'state_dict': {'x': torch.zeros(1)}, 'meta': RunsCode(marker)}, evil)
    with pytest.raises(CheckpointError, match='refused as unsafe: it references posix.system'):
        safe_load(str(evil))
    assert not marker.exists()


@pytest.mark.parametrize('norm_cfg,layer', [
    (dict(type='BN'), torch.nn.BatchNorm2d),
    (dict(type='SyncBN'), torch.nn.SyncBatchNorm),
    (dict(type='GN', num_groups=4), torch.nn.GroupNorm),
    (dict(type=torch.nn.BatchNorm2d, momentum=0.01), torch.nn.BatchNorm2d)])
def test_norm_layers_build_without_mmcv(norm_cfg, layer):
    assert type(build_norm(norm_cfg, 16)) is layer


@pytest.mark.skipif(find_spec('mmcv') is not None, reason='mmcv builds the names it registers')
def test_an_mmcv_only_norm_name_says_what_it_needs():
    with pytest.raises(ValueError, match="unknown type 'MMSyncBN'.*need mmcv"):
        build_norm(dict(type='MMSyncBN'), 16)


def test_frozen_norm_parameters():
    layer = build_norm(dict(type='BN', requires_grad=False), 8)
    assert not any(p.requires_grad for p in layer.parameters())
