"""Shapes, key layout and options of the RMT backbone (no mmdet/mmseg needed)."""
import json

import pytest
import torch

from rmt_mm.models import RMT, resolve_arch

from helpers.archs import RMT_TINY as MINI

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


@pytest.mark.parametrize('hw', [(224, 224), (511, 512), (112, 137), (32, 32), (1, 1)])
def test_any_input_size(hw):
    model = RMT(arch='tiny').eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *hw))
    for i, out in enumerate(outs):
        h, w = hw
        for _ in range(i + 2):  # each stride-2 conv rounds up
            h, w = -(-h // 2), -(-w // 2)
        assert out.shape == (1, model.embed_dims[i], h, w)
        assert torch.isfinite(out).all()


def test_odd_size_backward_both_attention_forms():
    model = RMT(arch=MINI).train()
    x = torch.randn(2, 3, 67, 45, requires_grad=True)
    sum(o.square().mean() for o in model(x)).backward()
    assert torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in model.parameters())


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
    ('huge', 'unknown RMT arch'),
    ({**MINI, 'depths': [1, 2, 2]}, 'differ in length'),
    ({k: v for k, v in MINI.items() if k != 'num_heads'}, 'missing keys'),
    ({**MINI, 'num_heads': [3, 2, 4, 4]}, 'head dim'),
    ({**MINI, 'colour': 'red'}, 'unknown keys'),
])
def test_bad_arch_is_reported(arch, match):
    with pytest.raises(ValueError, match=match):
        RMT(arch=arch)


def test_out_indices_subset_and_negative():
    model = RMT(arch=MINI, out_indices=(1, -1)).eval()
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [MINI['embed_dims'][1], MINI['embed_dims'][3]]


def test_frozen_stages():
    model = RMT(arch=MINI, frozen_stages=2).train()
    frozen = [model.patch_embed, model.layers[0], model.layers[1], model.extra_norms[0],
              model.extra_norms[1]]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(not m.training for m in frozen)
    assert all(p.requires_grad for p in model.layers[2].parameters())
    stem_bn = model.patch_embed.proj[1]
    before = stem_bn.running_mean.clone()
    sum(o.sum() for o in model(torch.randn(2, 3, 64, 64))).backward()
    assert torch.equal(before, stem_bn.running_mean)
    assert model.layers[0].blocks[0].ffn.fc1.weight.grad is None
    assert model.layers[2].blocks[0].ffn.fc1.weight.grad is not None


def test_default_init_matches_upstream_scheme():
    model = RMT(arch=MINI)
    fc = model.layers[0].blocks[0].ffn.fc1
    # trunc_normal(std=0.02) with upstream's absolute +-2 cut-off, zero bias
    assert torch.all(fc.bias == 0) and 0.015 < fc.weight.std() < 0.025
    assert torch.all(model.extra_norms[2].weight == 1)
    assert model.extra_norms[0].eps == 1e-5
    assert model.layers[0].blocks[0].retention_layer_norm.eps == 1e-6
