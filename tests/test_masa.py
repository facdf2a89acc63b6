"""The fast MaSA path computes the reference function: forward and gradients, all sizes."""
import pytest
import torch

from rmt_mm.models import RMT, masa, masa_blocked, speedups

from helpers.archs import RMT_TWO_FULL_STAGES


def _sequences(t: torch.Tensor) -> torch.Tensor:
    """``(B, H, W, heads, d)`` maps as the ``(B, heads, L, d)`` sequences full attention takes."""
    return t.flatten(1, 2).transpose(1, 2)


def pair(impl='sdpa', **kwargs):
    torch.manual_seed(0)
    ref = RMT(arch=RMT_TWO_FULL_STAGES, attn_impl='reference', drop_path_rate=0.0, **kwargs)
    fast = RMT(arch=RMT_TWO_FULL_STAGES, attn_impl=impl, drop_path_rate=0.0, **kwargs)
    fast.load_state_dict(ref.state_dict())
    return ref, fast


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def _weighted_sum(outs):
    """A loss whose gradients are not rounding noise (a plain sum of squares leaves, e.g.,
    the key biases' gradients, which are zero in exact arithmetic, pure noise)."""
    return sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() for o in outs)


@pytest.fixture(params=['one block', 'many blocks'])
def block_mode(request, monkeypatch):
    """``many blocks`` forces every kernel through its block loops with tiny blocks."""
    if request.param == 'many blocks':
        monkeypatch.setattr(masa, 'FULL_BIAS_BLOCK_ELEMS', 300)
        monkeypatch.setattr(masa_blocked, 'BLOCK_ELEMS', 300)
        monkeypatch.setattr(speedups, 'FFN_CHUNK_ELEMS', 1000)  # FFN row chunks of 1-3 rows
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
        _weighted_sum(outs).backward()
        grads.append((outs, xi.grad, {n: p.grad for n, p in model.named_parameters()}))
    (outs_r, gx_r, gp_r), (outs_f, gx_f, gp_f) = grads
    for a, b in zip(outs_f, outs_r):
        record_parity(f'MaSA-{impl}-vs-reference forward', (a - b).abs().max().item(),
                      rel_err(a, b))
        assert rel_err(a, b) <= 1e-5
    assert rel_err(gx_f, gx_r) <= 1e-5
    for name, g in gp_r.items():
        assert rel_err(gp_f[name], g) <= 1e-5, name


def test_in_place_residuals_train_with_drop_path_and_layerscale():
    """The fast path's in-place residual adds keep autograd exact under stochastic depth."""
    torch.manual_seed(0)
    ref = RMT(arch=RMT_TWO_FULL_STAGES, attn_impl='reference', drop_path_rate=0.5,
              norm_eval=True)
    fast = RMT(arch=RMT_TWO_FULL_STAGES, attn_impl='blocked', drop_path_rate=0.5,
               norm_eval=True)
    fast.load_state_dict(ref.state_dict())
    # float64: only the fast path's float32 rotary/decay tables differ (~1e-8); a slip is O(1)
    ref, fast = ref.double(), fast.double()
    x = torch.randn(2, 3, 40, 56, dtype=torch.float64)
    grads = []
    for model in (ref, fast):
        torch.manual_seed(1)  # the same drop-path masks
        sum(o.square().sum() for o in model.train()(x)).backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    gammas = [g.abs().sum() for n, g in grads[0].items() if 'gamma' in n]
    assert any(g == 0 for g in gammas) and any(g > 0 for g in gammas)  # blocks dropped and kept
    for name, g in grads[0].items():  # dropped blocks: exactly zero in both
        torch.testing.assert_close(grads[1][name], g, rtol=0, atol=1e-6 * g.abs().max().item(),
                                   msg=name)


@pytest.mark.parametrize('impl', ['sdpa', 'blocked'])
@pytest.mark.parametrize('hw', [(64, 64), (45, 61)])
def test_inference_matches_reference(impl, hw, block_mode):
    """No-grad calls take other code paths (preallocated buffers, in-place FFN)."""
    ref, fast = pair(impl)
    x = torch.randn(2, 3, *hw)
    with torch.no_grad():
        for a, b in zip(fast.eval()(x), ref.eval()(x)):
            assert rel_err(a, b) <= 1e-5


@pytest.mark.parametrize('decomposed', [True, False], ids=['axial', 'full'])
def test_blocked_backward_passes_gradcheck(decomposed, block_mode):
    """The hand-written backward of the blocked kernels against finite differences (float64;
    maps of 3x5 and 4x6 tokens with several blocks)."""
    torch.manual_seed(0)
    heads, d = 2, 4
    decay = torch.log(1 - 2**(-2 - torch.arange(heads, dtype=torch.float64) / heads))
    for h, w in ((3, 5), (4, 6)):
        dist = torch.arange(8, dtype=torch.float64)
        bias_h, bias_w = ((dist[:n, None] - dist[:n]).abs() * decay[:, None, None]
                          for n in (h, w))
        q, k, v = (torch.randn(2, h, w, heads, d, dtype=torch.float64, requires_grad=True)
                   for _ in range(3))
        if decomposed:
            kernel = masa_blocked.masa_decomposed_blocked
        else:  # full attention takes the (B, heads, L, d) sequences masa() makes
            def kernel(q, k, v, bh, bw):
                return masa_blocked.masa_full_blocked(*map(_sequences, (q, k, v)), bh, bw)
        assert torch.autograd.gradcheck(
            lambda *t, kernel=kernel, bh=bias_h, bw=bias_w: kernel(*t, bh, bw), (q, k, v))


@pytest.mark.parametrize('block_elems', [3402, 1134, 567, 5])
def test_full_attention_block_splits(monkeypatch, block_elems):
    """Blocks of several rows of all heads, of one row of some heads (3 heads in groups of 2)
    and of one row of one head, with a partial last block: forward and gradients exact."""
    monkeypatch.setattr(masa_blocked, 'BLOCK_ELEMS', block_elems)
    torch.manual_seed(0)
    h, w, heads, d = 7, 9, 3, 4
    decay = torch.log(1 - 2**(-2 - torch.arange(heads, dtype=torch.float64) / heads))
    dist = torch.arange(10, dtype=torch.float64)
    bias_h, bias_w = ((dist[:n, None] - dist[:n]).abs() * decay[:, None, None] for n in (h, w))
    grid = (bias_h[:, :, None, :, None] + bias_w[:, None, :, None, :]).reshape(heads, h * w, -1)
    q, k, v = (torch.randn(2, h, w, heads, d, dtype=torch.float64, requires_grad=True)
               for _ in range(3))
    grad_out = torch.randn(2, heads, h * w, d, dtype=torch.float64)
    seqs = [_sequences(t) for t in (q, k, v)]
    ref = masa.masa_full(*seqs, grid)
    out = masa_blocked.masa_full_blocked(*seqs, bias_h, bias_w)
    with torch.no_grad():
        assert torch.allclose(masa_blocked.masa_full_blocked(*seqs, bias_h, bias_w), ref)
    assert torch.allclose(out, ref)
    for a, b in zip(torch.autograd.grad(out, (q, k, v), grad_out),
                    torch.autograd.grad(ref, (q, k, v), grad_out)):
        assert torch.allclose(a, b)


@pytest.mark.parametrize('impl', ['sdpa', 'blocked'])
def test_full_attention_keeps_no_square_tensor(monkeypatch, impl):
    """Under autograd the fast kernels save only O(L) tensors for backward."""
    monkeypatch.setattr(masa, 'FULL_BIAS_BLOCK_ELEMS', 4 * 64 * 8)
    monkeypatch.setattr(masa_blocked, 'BLOCK_ELEMS', 4 * 64 * 32)
    heads, h, w, d = 4, 8, 16, 16
    length = h * w
    q, k, v = (torch.randn(1, h, w, heads, d, requires_grad=True) for _ in range(3))
    decay = torch.log(1 - 2**(-2 - torch.arange(heads) / heads))
    dist = torch.arange(16.0)
    bias_h, bias_w = ((dist[:n, None] - dist[:n]).abs() * decay[:, None, None] for n in (h, w))
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.shape) or t,
                                                  lambda t: t):
        seqs = [_sequences(t) for t in (q, k, v)]
        if impl == 'sdpa':
            out = masa.masa_full_sdpa(*seqs, decay, h, w)
        else:
            out = masa_blocked.masa_full_blocked(*seqs, bias_h, bias_w)
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
        RMT(arch=RMT_TWO_FULL_STAGES, attn_impl='flash9')


def _speedup_flags(model):
    block = model.layers[0].blocks[0]
    return {block.inplace_residuals, block.retention.inplace_residuals,
            block.ffn.inplace_residuals, block.ffn.row_chunks,
            block.retention.lepe.slab_weight_grad}


def test_cpu_speedups_are_one_switch_of_their_own():
    """``cpu_speedups`` turns the three measures on or off with any kernel (by default: off
    only for ``reference``), and the numbers do not move."""
    assert _speedup_flags(RMT(arch=RMT_TWO_FULL_STAGES, attn_impl='reference')) == {False}
    assert _speedup_flags(RMT(arch=RMT_TWO_FULL_STAGES, attn_impl='auto')) == {True}
    torch.manual_seed(0)
    base = RMT(arch=RMT_TWO_FULL_STAGES, attn_impl='reference', cpu_speedups=False,
               drop_path_rate=0.0, norm_eval=True)
    x = torch.randn(2, 3, 40, 56)
    with torch.no_grad():
        expected = base.eval()(x)
    _weighted_sum(base.train()(x)).backward()
    for impl in ('reference', 'blocked'):
        for on in (False, True):
            model = RMT(arch=RMT_TWO_FULL_STAGES, attn_impl=impl, cpu_speedups=on,
                        drop_path_rate=0.0, norm_eval=True)
            model.load_state_dict(base.state_dict())
            assert _speedup_flags(model) == {on}
            with torch.no_grad():
                for a, b in zip(model.eval()(x), expected):
                    assert rel_err(a, b) <= 1e-5, (impl, on)
            _weighted_sum(model.train()(x)).backward()
            for (name, p), q in zip(model.named_parameters(), base.parameters()):
                assert rel_err(p.grad, q.grad) <= 1e-5, (impl, on, name)


@pytest.mark.parametrize('decomposed', [True, False], ids=['axial', 'full'])
def test_reference_builds_only_its_own_form_s_tables(monkeypatch, decomposed):
    """An axial stage never builds full attention's (heads, L, L) grid bias (gigabytes on
    stage 1 at detection sizes), nor a full one the axial biases."""
    def refuse(*args):
        raise AssertionError('table of the other form built')

    monkeypatch.setattr(masa.RelPos2d, 'axis_bias' if not decomposed else 'grid_bias', refuse)
    relpos = masa.RelPos2d(32, 2, init_value=2, heads_range=4)
    q, k, v = (torch.randn(1, 5, 6, 2, 16) for _ in range(3))
    out = masa.masa(q, k, v, relpos, decomposed, 'reference', 0.25)
    assert out.shape == (1, 5, 6, 2, 16)
