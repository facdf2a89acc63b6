"""``attn_impl='flex'`` (FlexAttention, decay in ``score_mod``) computes the reference function.

CPU runs FlexAttention forward only, so these check inference parity and the training error.
Every new shape compiles (seconds on CPU): the cases are few and small, and odd-sized so that
the raster-index arithmetic of the full-attention ``score_mod`` meets ragged maps.
"""
import pytest
import torch

from rmt_mm.models import RMT
from rmt_mm.models.masa import ATTN_IMPLS, RelPos2d, masa

from helpers.archs import build_tiny

pytest.importorskip('torch.nn.attention.flex_attention')
TOL = 2e-5  # float32: measured 3e-7 to 8e-7 on the kernels, 2e-6 on the backbone


def _projections(h: int, w: int, heads: int, head_dims: int):
    torch.manual_seed(0)
    return [torch.randn(2, h, w, heads, head_dims) for _ in range(3)]


@pytest.mark.parametrize('hw', [(7, 9), (13, 5)])
@pytest.mark.parametrize('decomposed', [True, False], ids=['axial', 'full'])
def test_kernels_match_reference(hw, decomposed, record_parity):
    relpos = RelPos2d(32, 2, init_value=2, heads_range=4)  # head_dims 16, as RMT's stage 1
    q, k, v = _projections(*hw, 2, 16)
    with torch.no_grad():
        ref = masa(q.clone(), k.clone(), v.clone(), relpos, decomposed, 'reference', 0.25)
        out = masa(q.clone(), k.clone(), v.clone(), relpos, decomposed, 'flex', 0.25)
    err = (out - ref).abs().max().item()
    record_parity(f'flex kernel {hw} {"axial" if decomposed else "full"}', err,
                  err / ref.abs().max().item())
    assert err < TOL


def test_backbone_matches_reference(record_parity):
    torch.manual_seed(0)
    ref = build_tiny(RMT, attn_impl='reference', drop_path_rate=0.0).eval()
    flex = build_tiny(RMT, attn_impl='flex', drop_path_rate=0.0).eval()
    flex.load_state_dict(ref.state_dict())
    x = torch.randn(1, 3, 45, 61)
    with torch.no_grad():
        pairs = list(zip(flex(x), ref(x)))
    err = max((o - r).abs().max().item() for o, r in pairs)
    record_parity('flex backbone 45x61', err, max(
        ((o - r).abs().max() / r.abs().max()).item() for o, r in pairs))
    assert [o.shape for o, _ in pairs] == [r.shape for _, r in pairs]
    assert err < TOL


def test_flex_is_a_listed_kernel():
    assert 'flex' in ATTN_IMPLS


@pytest.mark.parametrize('decomposed', [True, False], ids=['axial', 'full'])
def test_cpu_training_is_refused_with_the_alternatives(decomposed):
    relpos = RelPos2d(32, 2, init_value=2, heads_range=4)
    q, k, v = _projections(3, 4, 2, 16)
    q.requires_grad_()
    with pytest.raises(RuntimeError, match=r"attn_impl='flex' cannot train on CPU.*'blocked'"):
        masa(q, k, v, relpos, decomposed, 'flex', 0.25)
