"""ResT v1 / ResTv2 backbones: upstream parity, checkpoint layout, the default drop-path rates,
single-token attention, upstream's initialisation and the arch tables (what every family
satisfies, e.g. any input size and frozen_stages: test_backbones.py)."""
import json
from functools import lru_cache
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from rmt_mm.models import ResT, ResTV2
from rmt_mm.models import rest as rest_v1
from rmt_mm.models import restv2 as rest_v2
from rmt_mm.models.rest_common import tokens_to_map

from helpers import fixture_dir, one_intra_op_thread
from helpers.archs import tiny_arch

CLASSES = {'v1': ResT, 'v2': ResTV2}
TAGS = {'v1': 'rest_v1_tiny', 'v2': 'rest_v2_tiny'}
INPUTS = ['x_64x96', 'x_128x128']
STAGES = ['stage1', 'stage2', 'stage3', 'stage4']


@pytest.fixture(autouse=True, scope='module')
def _single_thread():
    """Tiny tensors on one thread (the fixtures were produced with one thread too)."""
    with one_intra_op_thread():
        yield


def fixtures_dir() -> Path:
    return fixture_dir('rest')


@lru_cache(maxsize=None)
def expected(version: str) -> dict:
    return torch.load(fixtures_dir() / f'{TAGS[version]}_expected.pt')


@lru_cache(maxsize=None)
def checkpoint(name: str) -> dict:
    # Upstream checkpoints pickle an argparse.Namespace; trusted test data only.
    return torch.load(fixtures_dir() / name, weights_only=False)


@lru_cache(maxsize=None)
def manifest() -> dict:
    return json.loads((fixtures_dir() / 'manifest.json').read_text())


def build(version: str, **kwargs):
    return CLASSES[version](tiny_arch(CLASSES[version]), **kwargs)


def assert_parity(actual, ref, label, record_parity):
    """``label`` starts with the version (v1/v2): the summary groups by it."""
    assert actual.shape == ref.shape, label
    err = (actual - ref).abs().max().item()
    record_parity(f'ResT-{label.split()[0]}-vs-upstream', err, err / ref.abs().max().item())
    torch.testing.assert_close(actual, ref, rtol=1e-4, atol=2e-4, msg=label)


def load_upstream(model, state_dict):
    """strict=False load; return (missing, unexpected) as sets."""
    result = model.load_state_dict(state_dict, strict=False)
    return set(result.missing_keys), set(result.unexpected_keys)


# --------------------------------------------------------------------------- parity


@pytest.mark.parametrize('version', ['v1', 'v2'])
def test_fixture_config_is_the_tiny_arch(version):
    config = expected(version)['config']
    resolve = rest_v1.resolve_arch if version == 'v1' else rest_v2.resolve_arch
    ours = resolve(dict(tiny_arch(CLASSES[version]), drop_path_rate=0.0))
    for key, value in ours.items():
        assert config[key] == value, key
    if version == 'v1':
        assert config['drop_rate'] == config['attn_drop_rate'] == 0.0


def test_v1_d2_all_stages_parity(record_parity):
    """Mask R-CNN layout: norm1..3 in-line, stage 4 through the pretrained ``norm``."""
    model = build('v1', out_indices=(0, 1, 2, 3)).eval()
    missing, unexpected = load_upstream(model, checkpoint('rest_v1_tiny_cls.pth')['model'])
    loads = manifest()['rest_v1_tiny']['loads']
    ref = loads['d2 ResT(out_features=stage1-4).load_state_dict(model, strict=False)']
    assert missing == set(ref['missing']) and unexpected == set(ref['unexpected'])
    exp = expected('v1')
    for name in INPUTS:
        with torch.no_grad():
            outs = model(exp['inputs'][name])
        assert len(outs) == 4
        for out, stage in zip(outs, STAGES):
            assert_parity(out, exp['d2_backbone_feats'][name][stage],
                          f'v1 d2_backbone_feats {name} {stage}', record_parity)


def test_v1_d2_stage234_parity(record_parity):
    """RetinaNet layout: out_indices=(1, 2, 3) has no norm1, so stage 1 feeds on raw."""
    model = build('v1', out_indices=(1, 2, 3)).eval()
    assert not hasattr(model, 'norm1')
    missing, unexpected = load_upstream(model, checkpoint('rest_v1_tiny_cls.pth')['model'])
    loads = manifest()['rest_v1_tiny']['loads']
    ref = loads['d2 ResT(out_features=stage2-4).load_state_dict(model, strict=False)']
    assert missing == set(ref['missing']) and unexpected == set(ref['unexpected'])
    exp = expected('v1')
    for name in INPUTS:
        with torch.no_grad():
            outs = model(exp['inputs'][name])
        assert len(outs) == 3
        for out, stage in zip(outs, STAGES[1:]):
            assert_parity(out, exp['d2_backbone_feats_stage234'][name][stage],
                          f'v1 d2_backbone_feats_stage234 {name} {stage}', record_parity)


def test_v2_d2_parity(record_parity):
    model = build('v2').eval()
    missing, unexpected = load_upstream(model, checkpoint('rest_v2_tiny_cls.pth')['model'])
    loads = manifest()['rest_v2_tiny']['loads']
    ref = loads['d2 ResTV2(out_features=stage1-4).load_state_dict(model, strict=False)']
    assert missing == set(ref['missing']) and unexpected == set(ref['unexpected'])
    assert {k.split('.')[0] for k in unexpected} == set(ResTV2.classification_only_modules)
    assert all(k.startswith(ResTV2.dense_only_prefixes) for k in missing)
    exp = expected('v2')
    for name in INPUTS:
        with torch.no_grad():
            outs = model(exp['inputs'][name])
        for out, stage in zip(outs, STAGES):
            assert_parity(out, exp['d2_backbone_feats'][name][stage],
                          f'v2 d2_backbone_feats {name} {stage}', record_parity)


# Upstream's own float32-vs-float64 disagreement on the d2 features (fixture README), with a
# little slack: the v1 InstanceNorm amplifies rounding.
ROUNDING_BOUND = {'v1': 5e-5, 'v2': 5e-6}


@pytest.mark.parametrize('version', ['v1', 'v2'])
def test_float64_run_is_within_upstream_rounding(version, record_parity):
    """In float64 our model sits as close to upstream's float32 features as upstream's own
    float64 run does, i.e. the float32 differences above are rounding, not maths."""
    model = build(version).eval()
    load_upstream(model, checkpoint(f'{TAGS[version]}_cls.pth')['model'])
    model = model.double()
    exp = expected(version)
    for name in INPUTS:
        with torch.no_grad():
            outs = model(exp['inputs'][name].double())
        for out, stage in zip(outs, STAGES):
            ref = exp['d2_backbone_feats'][name][stage].double()
            err = (out - ref).abs().max().item()
            record_parity(f'ResT-{version}-float64-vs-upstream-float32', err,
                          err / ref.abs().max().item())
            assert err < ROUNDING_BOUND[version], (name, stage, err)


def classification_view(version: str, state_dict: dict):
    """A backbone whose only output is the classification trunk's normed stage 4.

    v1 with out_indices=(3,) inserts no in-line norm. For v2 the classification ``norm`` has
    exactly the maths of ``norm_4.0``, so it is loaded there.
    """
    model = build(version, out_indices=(3, ))
    state = {k: v for k, v in state_dict.items() if not k.startswith('head.')}
    if version == 'v2':
        state = {('norm_4.0.' + k[5:] if k.startswith('norm.') else k): v
                 for k, v in state.items()}
    assert load_upstream(model, state) == (set(), set())
    return model.eval()


@pytest.mark.parametrize('version', ['v1', 'v2'])
def test_classification_trunk_parity(version, record_parity):
    """Raw stage features (captured where upstream captured them), normed stage 4, logits."""
    state = checkpoint(f'{TAGS[version]}_cls.pth')['model']
    model = classification_view(version, state)
    captured = {}
    for i in range(1, 4):  # stage i's raw map is the input of the next patch embed
        model.embed(i).register_forward_pre_hook(
            lambda mod, args, i=i: captured.__setitem__(i - 1, args[0]))
    model.stage(3)[-1].register_forward_hook(lambda mod, args, out: captured.__setitem__(3, out))
    exp = expected(version)
    for name in INPUTS:
        with torch.no_grad():
            (stage4,) = model(exp['inputs'][name])
        captured[3] = tokens_to_map(captured[3], stage4.shape[-2:])
        for i, ref in enumerate(exp['cls_stage_feats'][name]):
            assert_parity(captured[i], ref, f'{version} cls_stage_feats {name} stage{i + 1}',
                          record_parity)
        assert_parity(stage4, exp['cls_stage4_normed'][name],
                      f'{version} cls_stage4_normed {name}', record_parity)
        logits = F.linear(stage4.mean(dim=(2, 3)), state['head.weight'], state['head.bias'])
        assert_parity(logits, exp['cls_logits'][name], f'{version} cls_logits {name}',
                      record_parity)


SOURCES = [('v1', 'rest_v1_tiny_cls.pth', 'model_ema', 'cls_logits_model_ema'),
           ('v1', 'rest_v1_tiny_cls_2021_format.pth', 'state_dict', 'cls_logits'),
           ('v2', 'rest_v2_tiny_cls.pth', 'model_ema', 'cls_logits_model_ema')]


@pytest.mark.parametrize('version,file,key,logits_key', SOURCES)
def test_other_checkpoint_containers(version, file, key, logits_key, record_parity):
    state = checkpoint(file)[key]
    model = classification_view(version, state)
    exp = expected(version)
    for name in INPUTS:
        with torch.no_grad():
            (stage4,) = model(exp['inputs'][name])
        logits = F.linear(stage4.mean(dim=(2, 3)), state['head.weight'], state['head.bias'])
        assert_parity(logits, exp[logits_key][name], f'{version} {logits_key} ({file}) {name}',
                      record_parity)


def test_v2_out_indices_only_select_outputs():
    """v2 output norms act on copies: a subset of outputs equals the same full outputs."""
    full = build('v2').eval()
    part = build('v2', out_indices=(1, 3)).eval()
    assert load_upstream(part, full.state_dict())[0] == set()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = full(x), part(x)
    torch.testing.assert_close(b[0], a[1], rtol=0, atol=0)
    torch.testing.assert_close(b[1], a[3], rtol=0, atol=0)


# --------------------------------------------------------------------------- real sizes

OFFICIAL = ['rest_lite', 'rest_small', 'rest_base', 'rest_large',
            'restv2_tiny', 'restv2_small', 'restv2_base', 'restv2_large']


@pytest.mark.parametrize('name', OFFICIAL)
def test_key_shapes_and_params_match_official(name):
    official = json.loads((fixtures_dir() / 'official_key_shapes.json').read_text())
    ref = official['models'][name]
    cls = ResTV2 if name.startswith('restv2') else ResT
    with torch.device('meta'):
        model = cls(name)
    assert list(model.arch_settings['num_heads']) == ref['num_heads']
    sd = model.state_dict()
    dense = {k: tuple(v.shape) for k, v in sd.items() if k.startswith(cls.dense_only_prefixes)}
    ours = {k: list(v.shape) for k, v in sd.items() if k not in dense}
    theirs = {k: v for k, v in ref['state_dict'].items()
              if k.split('.')[0] not in cls.classification_only_modules}
    assert ours == theirs
    # The dense-only additions are exactly one (C,) weight and bias per output norm.
    dims = ref['embed_dims']
    if cls is ResT:
        expected_dense = {f'norm{k}.{p}': (dims[k - 1], ) for k in (1, 2, 3)
                          for p in ('weight', 'bias')}
    else:
        expected_dense = {f'norm_{k}.0.{p}': (dims[k - 1], ) for k in (1, 2, 3, 4)
                          for p in ('weight', 'bias')}
    assert dense == expected_dense
    n_params = sum(p.numel() for n, p in model.named_parameters()
                   if not n.startswith(cls.dense_only_prefixes))
    final_norm = 2 * dims[-1] if cls is ResT else 0  # v1 keeps ``norm`` for stage 4
    assert n_params == ref['num_params_without_head_and_final_norm'] + final_norm


@pytest.mark.parametrize('cls,arch,rate', [(ResT, 'lite', 0.1), (ResT, 'large', 0.2),
                                           (ResTV2, 'tiny', 0.1), (ResTV2, 'large', 0.5)])
def test_default_drop_path_is_upstream_detection_rate(cls, arch, rate):
    with torch.device('meta'):
        model = cls(arch)
    assert isinstance(model.stage1[0].drop_path, torch.nn.Identity)
    assert model.stage4[-1].drop_path.drop_prob == pytest.approx(rate)


# --------------------------------------------------------------------------- single tokens


def test_instance_norm_maps():
    attn = torch.rand(2, 3, 5, 4)
    torch.testing.assert_close(rest_v1.instance_norm_maps(attn), F.instance_norm(attn))
    single = torch.rand(2, 3, 1, 1, requires_grad=True)
    out = rest_v1.instance_norm_maps(single)
    assert torch.equal(out, torch.zeros_like(out))
    out.sum().backward()  # still part of the graph
    assert torch.equal(single.grad, torch.zeros_like(single))


def test_v1_single_token_attention_is_projection_bias():
    """One query and one key: the normalised attention is 0, so only proj's bias remains."""
    attn = rest_v1.EMSA(16, 4, 1, qkv_bias=True, qk_scale=None, apply_transform=True)
    out = attn(torch.randn(3, 1, 16), (1, 1))
    torch.testing.assert_close(out, attn.proj.bias.expand(3, 1, 16))


# --------------------------------------------------------------------------- init and archs


def test_upstream_init():
    torch.manual_seed(0)
    for version, conv_bias_zero in (('v1', False), ('v2', True)):
        model = build(version)
        linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
        weights = torch.cat([m.weight.flatten() for m in linears])
        assert abs(weights.std().item() - 0.02) < 0.002  # trunc_normal(std=0.02)
        assert all(torch.all(m.bias == 0) for m in linears)
        for m in model.modules():
            if isinstance(m, torch.nn.LayerNorm):
                assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
        conv_biases = [m.bias for m in model.modules()
                       if isinstance(m, torch.nn.Conv2d) and m.bias is not None]
        assert all(bool(torch.all(b == 0)) == conv_bias_zero for b in conv_biases), version


def test_resolve_arch_names():
    assert rest_v1.resolve_arch('SMALL') == rest_v1.REST_ARCHS['small']
    assert rest_v1.resolve_arch('Rest_Large')['depths'] == [2, 2, 18, 2]
    assert rest_v2.resolve_arch('L')['num_heads'] == [2, 4, 8, 16]
    assert rest_v2.resolve_arch('restv2_base')['depths'] == [1, 3, 16, 3]
    cfg = rest_v2.resolve_arch('tiny')
    cfg['depths'][0] = 99  # a copy, not the table
    assert rest_v2.RESTV2_ARCHS['tiny']['depths'][0] == 1
    custom = rest_v1.resolve_arch(tiny_arch(ResT))
    assert custom['qkv_bias'] and custom['apply_transform'] and custom['drop_path_rate'] == 0


def bad(version, **changes):
    arch = tiny_arch(CLASSES[version])
    arch.update(changes)
    return {k: v for k, v in arch.items() if v is not None}


BAD_ARCHS = [
    ('v1', 'huge', ValueError, 'unknown ResT arch'),
    ('v1', 't', ValueError, 'unknown ResT arch'),  # 't' is a v2 alias only
    ('v2', 'lite', ValueError, 'unknown ResTv2 arch'),
    ('v2', 3, TypeError, 'str or dict'),
    ('v1', bad('v1', sr_ratios=None), ValueError, r"missing keys \['sr_ratios'\]"),
    ('v2', bad('v2', mlp_ratios=[4] * 4), ValueError, r"unknown keys \['mlp_ratios'\]"),
    ('v2', bad('v2', depths=[1, 1, 2]), ValueError, 'depths must be 4 positive integers'),
    ('v1', bad('v1', num_heads=[1, 2, 4, 0]), ValueError, 'num_heads must be 4 positive'),
    ('v1', bad('v1', mlp_ratios=[4, 4, 4, 'x']), ValueError, 'mlp_ratios must be 4 positive'),
    ('v2', bad('v2', num_heads=[1, 3, 4, 8]), ValueError, 'not divisible by num_heads 3'),
    ('v2', bad('v2', embed_dims=[15, 32, 64, 128], num_heads=[1, 2, 4, 8]), ValueError,
     'embed_dims\\[0\\] must be even'),
    ('v1', bad('v1', drop_path_rate=1.5), ValueError, 'drop_path_rate must be in'),
    ('v1', bad('v1', qkv_bias='yes'), ValueError, 'qkv_bias must be a bool'),
    ('v1', bad('v1', qk_scale=-1.0), ValueError, 'qk_scale must be None or positive'),
]


@pytest.mark.parametrize('version,arch,error,match', BAD_ARCHS)
def test_resolve_arch_errors(version, arch, error, match):
    resolve = rest_v1.resolve_arch if version == 'v1' else rest_v2.resolve_arch
    with pytest.raises(error, match=match):
        resolve(arch)
    with pytest.raises(error, match=match):
        CLASSES[version](arch)
