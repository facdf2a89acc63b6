"""Upstream mmseg 0.x segmentor checkpoints (``backbone.*`` keys as the authors' fork saved them)
initialise the backbone of our segmentation configs exactly."""
import pytest
import torch

from rmt_mm.cli import load_config
from rmt_mm.errors import CheckpointError

from helpers import REPO
from helpers.seg import seg_batch


def build_segmentor(arch: dict, checkpoint: str, config='fpn_rmt_s_ade20k-512x512-80k.py'):
    from mmseg.registry import MODELS
    cfg, _ = load_config(str(REPO / 'configs' / config))
    cfg.model.backbone.update(arch=arch, norm_cfg=dict(type='BN', requires_grad=True),
                              init_cfg=dict(type='Pretrained', checkpoint=checkpoint))
    cfg.model.neck.in_channels = arch['embed_dims']
    cfg.model.decode_head.norm_cfg = dict(type='BN', requires_grad=True)
    return MODELS.build(cfg.model)


@pytest.fixture
def upstream_seg_ckpt(rmt_fixtures, rmt_manifest, tmp_path):
    """The authors' layout: backbone.* keys plus their segmentor's heads, mmseg 0.x meta."""
    src = torch.load(rmt_fixtures / 'tiny_c1110_upstream_mmdet2_maskrcnn.pth', weights_only=False)
    arch = rmt_manifest['tiny_c1110/config']
    backbone = {k: v for k, v in src['state_dict'].items() if k.startswith('backbone.')}
    heads = {k: v for k, v in build_segmentor(arch, 'unused').state_dict().items()
             if not k.startswith('backbone.')}
    path = tmp_path / 'upstream_fpn_seg.pth'
    torch.save({'meta': dict(mmseg_version='0.13.0', CLASSES=('wall', ) * 150),
                'state_dict': {**backbone, **heads}}, path)
    return path, arch, backbone


def test_backbone_loads_exactly(upstream_seg_ckpt):
    path, arch, backbone = upstream_seg_ckpt
    model = build_segmentor(arch, str(path))
    model.init_weights()
    own = model.backbone.state_dict()
    assert {f'backbone.{k}' for k in own} == set(backbone)
    assert all(torch.equal(own[k], backbone[f'backbone.{k}']) for k in own)
    inputs, samples = seg_batch(150, (64, 64), n=2)
    model.eval()
    with torch.no_grad():
        assert model.predict(inputs, samples)[0].pred_sem_seg.data.shape == (1, 64, 64)


def test_wrong_arch_is_refused(upstream_seg_ckpt):
    path, arch, _ = upstream_seg_ckpt
    model = build_segmentor({**arch, 'depths': [1, 2, 3, 1]}, str(path))
    with pytest.raises(CheckpointError, match='config asks for a custom RMT'):
        model.init_weights()
