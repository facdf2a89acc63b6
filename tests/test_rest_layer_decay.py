"""ResTStageDecayOptimizerConstructor: per-stage lr multipliers, weight decay of 1-D
parameters, frozen parameters, and the settings and models it refuses."""
import pytest
from torch import nn

from rmt_mm.engine.optimizers import ResTStageDecayOptimizerConstructor
from rmt_mm.models import RMT, ResT, ResTV2

from helpers.archs import build_tiny


class _Model(nn.Module):
    """Just enough of a detector or segmentor for the constructor: a backbone and a head."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Conv2d(8, 2, 1)


def _constructor(**paramwise_cfg) -> ResTStageDecayOptimizerConstructor:
    return ResTStageDecayOptimizerConstructor(
        dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=2.0, weight_decay=0.05)),
        paramwise_cfg)


def _groups(model: nn.Module, decay_rate: float) -> dict:
    """``{parameter name: (lr multiplier, weight decay)}`` as the constructor sets them."""
    wrapper = _constructor(decay_rate=decay_rate)(model)
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: (group['lr'] / 2.0, group['weight_decay'])
            for group in wrapper.optimizer.param_groups for p in group['params']}


def test_restv2_multipliers_per_stage():
    groups = _groups(_Model(build_tiny(ResTV2)), 0.5)
    assert {name: groups[name] for name in [
        'backbone.stem.proj.0.weight', 'backbone.stem.norm.bias', 'backbone.stage1.0.attn.q.weight',
        'backbone.patch_2.proj.weight', 'backbone.patch_3.pos.pa_conv.weight',
        'backbone.stage3.0.attn.up.0.bias', 'backbone.stage4.0.mlp.fc2.weight',
        'backbone.norm_4.0.weight', 'head.weight', 'head.bias'
    ]} == {
        'backbone.stem.proj.0.weight': (0.5**5, 0.05),
        'backbone.stem.norm.bias': (0.5**5, 0.0),
        'backbone.stage1.0.attn.q.weight': (0.5**4, 0.05),
        'backbone.patch_2.proj.weight': (0.5**3, 0.05),  # the first layer of stage 2
        'backbone.patch_3.pos.pa_conv.weight': (0.5**2, 0.05),
        'backbone.stage3.0.attn.up.0.bias': (0.5**2, 0.0),
        'backbone.stage4.0.mlp.fc2.weight': (0.5, 0.05),
        'backbone.norm_4.0.weight': (1.0, 0.0),  # a new output norm trains like the heads
        'head.weight': (1.0, 0.05),
        'head.bias': (1.0, 0.0),
    }


def test_rest_v1_names_and_frozen_parameters():
    """ResT names its patch embeds ``patch_embed_k``; its frozen stem and stage 1 (with the
    output norm ``norm1``) are left out of the optimizer."""
    model = _Model(ResT('lite', frozen_stages=1))
    groups = _groups(model, 0.5)
    assert groups['backbone.patch_embed_2.conv.weight'] == (0.5**3, 0.05)
    assert groups['backbone.stage4.1.mlp.fc2.bias'] == (0.5, 0.0)
    assert groups['backbone.norm.weight'] == (1.0, 0.0)
    assert set(groups) == {n for n, p in model.named_parameters() if p.requires_grad}
    assert not any(n.startswith(('backbone.stem.', 'backbone.stage1.', 'backbone.norm1.'))
                   for n in groups)


@pytest.mark.parametrize('paramwise_cfg', [{}, dict(decay_rate=0.0), dict(decay_rate=True),
                                           dict(decay_rate=0.9, custom_keys={})])
def test_refuses_bad_settings(paramwise_cfg):
    with pytest.raises(ValueError, match='decay_rate'):
        _constructor(**paramwise_cfg)


def test_refuses_other_backbones():
    with pytest.raises(TypeError, match='ResT or ResTV2'):
        _constructor(decay_rate=0.9)(_Model(RMT(arch='tiny')))


def test_refuses_an_optimizer_without_weight_decay():
    with pytest.raises(ValueError, match='weight_decay'):
        ResTStageDecayOptimizerConstructor(
            dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1.0)), dict(decay_rate=0.9))
