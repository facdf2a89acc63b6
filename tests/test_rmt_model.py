"""RMT's own shapes, key layout, arch table and initialisation (no mmdet/mmseg needed; what
every family satisfies: test_backbones.py)."""
import json

import pytest
import torch

from rmt_mm.models import RMT, resolve_arch

from helpers.archs import RMT_TINY

SIZES = {'T': 'tiny', 'S': 'small', 'B': 'base', 'L': 'large'}


@pytest.mark.parametrize('size', SIZES)
def test_keys_shapes_and_params_match_upstream(rmt_fixtures, size):
    official = json.loads((rmt_fixtures / 'official_key_shapes.json').read_text())
    upstream = {k: v for k, v in official[f'{size}/classification'].items()
                if k.split('.')[0] not in RMT.classification_only_modules}
    with torch.device('meta'):
        model = RMT(arch=SIZES[size])
    ours = {k: list(v.shape) for k, v in model.state_dict().items()
            if not k.startswith('extra_norms.')}
    assert ours == upstream
    head_params = sum(
        torch.Size(v).numel() for k, v in official[f'{size}/classification'].items()
        if k.split('.')[0] in RMT.classification_only_modules and 'running' not in k
        and 'num_batches' not in k)
    extra = sum(p.numel() for n, p in model.named_parameters() if n.startswith('extra_norms.'))
    ours_params = sum(p.numel() for p in model.parameters())
    assert ours_params - extra == official[f'{size}/classification_params'] - head_params


@pytest.mark.parametrize('hw', [(224, 224), (511, 512)])
def test_released_arch_at_large_sizes(hw):
    """RMT-T's kernels on large maps, an odd size included (small and 1-pixel sizes of every
    family: test_backbones.py)."""
    model = RMT(arch='tiny').eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *hw))
    for i, out in enumerate(outs):
        h, w = hw
        for _ in range(i + 2):  # each stride-2 conv rounds up
            h, w = -(-h // 2), -(-w // 2)
        assert out.shape == (1, model.embed_dims[i], h, w)
        assert torch.isfinite(out).all()


def test_arch_aliases_and_defaults():
    assert resolve_arch('S') == resolve_arch('small') == resolve_arch('s')
    assert resolve_arch('m') == resolve_arch('base')  # upstream calls RMT-B "M2"
    with torch.device('meta'):  # structure only
        model = RMT(arch='b')
        tiny = RMT(arch='t')
    assert model.drop_path_rate == 0.4
    assert model.layers[2].blocks[0].layerscale and not model.layers[1].blocks[0].layerscale
    assert [layer.blocks[0].retention.decomposed for layer in tiny.layers] == \
        [True, True, False, False]


@pytest.mark.parametrize('arch,match', [
    ({**RMT_TINY, 'depths': [1, 2, 2]}, 'differ in length'),
    ({**RMT_TINY, 'num_heads': [3, 2, 4, 4]}, 'head dim'),
])
def test_bad_arch_is_reported(arch, match):
    with pytest.raises(ValueError, match=match):
        RMT(arch=arch)


def test_default_init_matches_upstream_scheme():
    model = RMT(arch=RMT_TINY)
    fc = model.layers[0].blocks[0].ffn.fc1
    # trunc_normal(std=0.02) with upstream's absolute +-2 cut-off, zero bias
    assert torch.all(fc.bias == 0) and 0.015 < fc.weight.std() < 0.025
    assert torch.all(model.extra_norms[2].weight == 1)
    assert model.extra_norms[0].eps == 1e-5
    assert model.layers[0].blocks[0].retention_layer_norm.eps == 1e-6
