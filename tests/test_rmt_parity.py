"""The backbone reproduces the upstream detection/segmentation features to float32 rounding."""
import pytest
import torch

from rmt_mm.models import RMT

TAGS = ['tiny_c1100', 'tiny_c1110']
# expected-feature name -> (checkpoint file suffix, use EMA weights)
SOURCES = {
    'deit_model': ('cls_deit_format.pth', False),
    'deit_model_ema': ('cls_deit_format.pth', True),
    'tokenlabel_state_dict': ('cls_tokenlabel_format.pth', False),
    'upstream_mmdet2_maskrcnn': ('upstream_mmdet2_maskrcnn.pth', False),
}
_expected_cache = {}


def expected(fixtures, tag):
    if tag not in _expected_cache:
        _expected_cache[tag] = torch.load(fixtures / f'{tag}_expected.pt')
    return _expected_cache[tag]


def build_loaded(fixtures, manifest, tag, source, attn_impl='auto'):
    from rmt_mm.checkpoints.backbone import load_backbone_checkpoint
    suffix, ema = SOURCES[source]
    model = RMT(arch=manifest[f'{tag}/config'], attn_impl=attn_impl)
    load_backbone_checkpoint(model, str(fixtures / f'{tag}_{suffix}'), use_ema=ema)
    return model.eval()


def assert_features_match(outs, refs, case='', record=None):
    assert len(outs) == len(refs) == 4
    for out, ref in zip(outs, refs):
        assert out.shape == ref.shape
        err = (out - ref).abs().max().item()
        rel = err / ref.abs().max().item()
        if record is not None:
            record(f'RMT-{case.rsplit("/", 1)[-1]}-vs-upstream', err, rel)
        assert err < 2e-5 and rel < 1e-5, f'{case}: max abs {err:.2e}, rel {rel:.2e}'


# The upstream segmentation code has no detection checkpoint to load.
CASES = [(tag, task, source) for tag in TAGS for task in ('det', 'seg') for source in SOURCES
         if not (task == 'seg' and source == 'upstream_mmdet2_maskrcnn')]


@pytest.mark.parametrize('attn_impl', ['reference', 'sdpa', 'blocked'])
@pytest.mark.parametrize('tag,task,source', CASES)
def test_features_match_upstream(rmt_fixtures, rmt_manifest, record_parity, tag, task, source,
                                 attn_impl):
    exp = expected(rmt_fixtures, tag)
    model = build_loaded(rmt_fixtures, rmt_manifest, tag, source, attn_impl)
    for name, x in exp['inputs'].items():
        with torch.no_grad():
            outs = model(x)
        assert_features_match(outs, exp[f'{task}_feats_from_{source}'][name],
                              f'{tag}/{task}/{source}/{name}/{attn_impl}', record_parity)


@pytest.mark.parametrize('tag', TAGS)
def test_pretrained_init_cfg_on_raw_upstream_file(rmt_fixtures, rmt_manifest, tag):
    """``init_cfg=Pretrained`` converts the raw ImageNet file on the fly (as mmdet's Swin does)."""
    model = RMT(arch=rmt_manifest[f'{tag}/config'],
                init_cfg=dict(type='Pretrained',
                              checkpoint=str(rmt_fixtures / f'{tag}_cls_deit_format.pth')))
    model.init_weights()
    model.eval()
    exp = expected(rmt_fixtures, tag)
    with torch.no_grad():
        outs = model(exp['inputs']['x_72x104'])
    assert_features_match(outs, exp['det_feats_from_deit_model']['x_72x104'])


def test_ema_and_raw_weights_differ(rmt_fixtures, rmt_manifest):
    """Guards the test above: the fixture's EMA weights are distinguishable from the raw ones."""
    exp = expected(rmt_fixtures, 'tiny_c1100')
    a = exp['det_feats_from_deit_model']['x_64x64'][3]
    b = exp['det_feats_from_deit_model_ema']['x_64x64'][3]
    assert (a - b).abs().max() > 1e-2
