"""The fast MaSA path computes the reference function: forward and gradients, all sizes."""
import pytest
import torch

from rmt_mm.models import RMT
from rmt_mm.models import masa

MINI = dict(embed_dims=[16, 32, 64, 96], depths=[1, 1, 2, 1], num_heads=[2, 2, 4, 4],
            init_values=[2, 2, 2, 2], heads_ranges=[4, 4, 6, 6], mlp_ratios=[3, 3, 3, 3],
            chunkwise_recurrents=[True, True, False, False], layerscales=[False, False, True, True])


def pair(impl='sdpa', **kwargs):
    torch.manual_seed(0)
    ref = RMT(arch=MINI, attn_impl='reference', drop_path_rate=0.0, **kwargs)
    fast = RMT(arch=MINI, attn_impl=impl, drop_path_rate=0.0, **kwargs)
    fast.load_state_dict(ref.state_dict())
    return ref, fast


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.fixture(params=['one block', 'many blocks'])
def block_mode(request, monkeypatch):
    """``many blocks`` forces every kernel through its block loops with tiny blocks."""
    if request.param == 'many blocks':
        monkeypatch.setattr(masa, 'FULL_BIAS_BLOCK_ELEMS', 300)
        monkeypatch.setattr(masa, 'BLOCK_ELEMS', 300)
    return request.param


@pytest.mark.parametrize('impl', ['sdpa', 'blocked'])
@pytest.mark.parametrize('hw', [(64, 64), (72, 104), (45, 61), (33, 20)])
def test_forward_and_gradients_match_reference(impl, hw, block_mode, record_parity):
    # norm_eval: train-mode BN would make the gradients of the conv biases before it exactly
    # zero, i.e. pure rounding noise.
    ref, fast = pair(impl, norm_eval=True)
    x = torch.randn(2, 3, *hw)
    grads = []
    for model in (ref, fast):
        xi = x.clone().requires_grad_()
        outs = model.train()(xi)
        sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() for o in outs).backward()
        grads.append((outs, xi.grad, {n: p.grad for n, p in model.named_parameters()}))
    (outs_r, gx_r, gp_r), (outs_f, gx_f, gp_f) = grads
    for a, b in zip(outs_f, outs_r):
        record_parity(f'MaSA-{impl}-vs-reference forward', (a - b).abs().max().item(),
                      rel_err(a, b))
        assert rel_err(a, b) <= 1e-5
    assert rel_err(gx_f, gx_r) <= 1e-5
    for name, g in gp_r.items():
        assert rel_err(gp_f[name], g) <= 1e-5, name


@pytest.mark.parametrize('impl', ['sdpa', 'blocked'])
def test_full_attention_keeps_no_square_tensor(monkeypatch, impl):
    """Under autograd the fast kernels save only O(L) tensors for backward."""
    monkeypatch.setattr(masa, 'FULL_BIAS_BLOCK_ELEMS', 4 * 64 * 8)
    monkeypatch.setattr(masa, 'BLOCK_ELEMS', 4 * 64 * 32)
    heads, h, w, d = 4, 8, 16, 16
    length = h * w
    q, k, v = (torch.randn(1, h, w, heads, d, requires_grad=True) for _ in range(3))
    decay = torch.log(1 - 2**(-2 - torch.arange(heads) / heads))
    dist = torch.arange(16.0)
    bias_h, bias_w = ((dist[:n, None] - dist[:n]).abs() * decay[:, None, None] for n in (h, w))
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.shape) or t,
                                                  lambda t: t):
        if impl == 'sdpa':
            out = masa.masa_full_sdpa(q, k, v, decay, d**-0.5)
        else:
            out = masa.masa_full_blocked(q, k, v, bias_h, bias_w, d**-0.5)
    assert saved and all(shape.numel() < length * length for shape in saved)
    out.sum().backward()
    assert torch.isfinite(q.grad).all()


def test_cached_tables_follow_loaded_buffers():
    ref, fast = pair('blocked')
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        fast.eval()(x)  # fills the cache
        state = ref.state_dict()
        state['layers.2.Relpos.decay'] = state['layers.2.Relpos.decay'] * 2
        ref.load_state_dict(state)
        fast.load_state_dict(state)
        assert rel_err(fast(x)[3], ref.eval()(x)[3]) <= 1e-5


def test_unknown_impl_is_reported():
    with pytest.raises(ValueError, match='attn_impl'):
        RMT(arch=MINI, attn_impl='flash9')
