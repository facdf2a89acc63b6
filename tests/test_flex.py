"""``attn_impl='flex'`` (FlexAttention, decay in ``score_mod``) computes the reference function
at every input size, from one compiled kernel per signature, and never runs unfused.

CPU runs FlexAttention forward only, so these check inference. Compiling is the cost (about
ten seconds of CPU per graph), so the cases share kernel signatures: the tiny arch here takes
RMT-T's heads and head dimensions (its kernels are two of RMT-T's four), and the sizes are
many, odd and of every aspect ratio instead.
"""
import warnings

import pytest
import torch

from rmt_mm.models import RMT, masa_flex
from rmt_mm.models.masa import ATTN_IMPLS, RelPos2d, masa, masa_decomposed
from rmt_mm.models.masa_flex import FlexFallbackWarning, masa_decomposed_flex, masa_full_flex
from rmt_mm.parity import AUTOCAST_TOL

from helpers.archs import tiny_arch

flex_attention = pytest.importorskip('torch.nn.attention.flex_attention')
TOL = 1e-4  # float32, max abs: measured up to 3e-6 (tiny arch) and 1.1e-5 (RMT-T, 224x320)
#: The tiny arch, one block per stage, with RMT-T's attention: axial stages of 4 heads of 16
#: dims, full-attention stages of 8 heads of 32 dims (and narrow FFNs, for speed).
ARCH = dict(tiny_arch(RMT), depths=[1, 1, 1, 1], embed_dims=[64, 64, 256, 256],
            num_heads=[4, 4, 8, 8], chunkwise_recurrents=[True, True, False, False],
            mlp_ratios=[1, 1, 1, 1])
#: Input sizes (H, W): stage maps from 1 x 8 to 63 x 8 and 40 x 56, lines of every length mod
#: 16 among them.
SIZES = [(45, 61), (64, 64), (128, 128), (33, 47), (97, 41), (160, 224), (31, 250), (250, 31),
         (72, 200), (200, 72), (57, 57), (120, 88)]
#: Sizes whose stage-4 map is one token wide or high: there bf16 autocast is ~90% off for every
#: kernel, the reference included (normalisation over one column, not attention), so the bf16
#: check leaves them out.
BF16_SIZES = [s for s in SIZES if min(s) >= 32]


@pytest.fixture(scope='module', autouse=True)
def own_compilations():
    """This module's kernels compiled afresh: other tests of the process (the device check)
    compile the same signatures at other sizes, which would count here."""
    saved = dict(masa_flex._COMPILED)
    masa_flex._COMPILED.clear()
    yield
    masa_flex._COMPILED.clear()
    masa_flex._COMPILED.update(saved)


@pytest.fixture
def unfused_flex_calls(monkeypatch):
    """Every call of FlexAttention's unfused (eager) implementation: torch reaches it only
    through its "called without torch.compile" notice."""
    calls = []
    notice = flex_attention._warn_once

    def spy(warning_id, *args, **kwargs):
        if warning_id == 'flex_attention_performance':
            calls.append(warning_id)
        return notice(warning_id, *args, **kwargs)

    monkeypatch.setattr(flex_attention, '_warn_once', spy)
    return calls


def _models(arch=ARCH):
    """``arch`` with ``reference`` and ``flex``, the same weights."""
    torch.manual_seed(0)
    ref = RMT(arch, attn_impl='reference', drop_path_rate=0.0).eval()
    flex = RMT(arch, attn_impl='flex', drop_path_rate=0.0).eval()
    flex.load_state_dict(ref.state_dict())
    return ref, flex


def _graphs_per_signature() -> int:
    """Graphs one signature compiles for one image at any size: one, two where keys are padded
    on some calls. (A batch of one line, or lines of one token, would add one each: dynamo
    specialises sizes of 1.)"""
    return 2 if masa_flex.cpu_keys_need_padding(torch.device('cpu')) else 1


def _projections(h: int, w: int, heads: int, head_dims: int):
    torch.manual_seed(0)
    return [torch.randn(1, h, w, heads, head_dims) for _ in range(3)]


@pytest.mark.parametrize('hw', [(7, 9), (13, 5), (2, 11)])
@pytest.mark.parametrize('decomposed, heads, head_dims', [(True, 4, 16), (False, 8, 32)],
                         ids=['axial', 'full'])  # the signatures of ARCH
def test_kernels_match_reference(hw, decomposed, heads, head_dims, record_parity):
    relpos = RelPos2d(heads * head_dims, heads, init_value=2, heads_range=4)
    q, k, v = _projections(*hw, heads, head_dims)
    with torch.no_grad():
        ref = masa(q.clone(), k.clone(), v.clone(), relpos, decomposed, 'reference', 0.25)
        out = masa(q.clone(), k.clone(), v.clone(), relpos, decomposed, 'flex', 0.25)
    err = (out - ref).abs().max().item()
    record_parity(f'flex kernel {hw} {"axial" if decomposed else "full"}', err,
                  err / ref.abs().max().item())
    assert err < TOL


def test_one_compiled_kernel_per_signature_serves_every_size(record_parity,
                                                             unfused_flex_calls):
    ref, flex = _models()
    before = masa_flex.compilations()
    graphs = torch._dynamo.utils.counters['stats']['unique_graphs']
    with warnings.catch_warnings():
        warnings.simplefilter('error', FlexFallbackWarning)
        for size in SIZES:
            x = torch.randn(1, 3, *size)
            with torch.no_grad():
                pairs = list(zip(flex(x), ref(x)))
            assert [o.shape for o, _ in pairs] == [r.shape for _, r in pairs]
            assert all(o.isfinite().all() for o, _ in pairs), size
            err = max((o - r).abs().max().item() for o, r in pairs)
            record_parity(f'flex backbone {size}', err, max(
                ((o - r).abs().max() / r.abs().max()).item() for o, r in pairs))
            assert err < TOL, size
    counts = {k: n for k, n in masa_flex.compilations().items()
              if k in ('_line heads=4 head_dims=16 torch.float32 cpu',
                       '_grid heads=8 head_dims=32 torch.float32 cpu')}
    new = {k: n - before.get(k, 0) for k, n in counts.items()}
    # Twelve sizes, two signatures: at most one graph each (two where keys are sometimes
    # padded), whatever compiled before.
    assert len(counts) == 2, masa_flex.compilations()
    assert all(n <= _graphs_per_signature() / 2 for n in new.values()), new
    assert all(n <= _graphs_per_signature() for n in counts.values()), counts
    assert torch._dynamo.utils.counters['stats']['unique_graphs'] - graphs == sum(new.values())
    assert unfused_flex_calls == []


def test_bf16_autocast_inference_within_tolerance(unfused_flex_calls):
    ref, flex = _models()
    for size in BF16_SIZES:
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            expected = ref(x)
            with torch.autocast('cpu', dtype=torch.bfloat16):
                outs = flex(x)
        assert all(o.dtype == torch.bfloat16 and o.isfinite().all() for o in outs), size
        err = max(((o.float() - r).abs().max() / r.abs().max()).item()
                  for o, r in zip(outs, expected))
        assert err < AUTOCAST_TOL['bfloat16'], (size, err)  # measured 0.7-1.1%, as the others
    # ARCH's two signatures in bf16 (other tests may have compiled other signatures).
    counts = {k: n for k, n in masa_flex.compilations().items()
              if k in ('_line heads=4 head_dims=16 torch.bfloat16 cpu',
                       '_grid heads=8 head_dims=32 torch.bfloat16 cpu')}
    assert len(counts) == 2 and all(n <= _graphs_per_signature() for n in counts.values()), counts
    assert unfused_flex_calls == []


def test_rmt_t_at_a_realistic_size(record_parity, unfused_flex_calls):
    ref, flex = _models('t')
    x = torch.randn(1, 3, 160, 224)
    with torch.no_grad():
        pairs = list(zip(flex(x), ref(x)))
    assert all(o.isfinite().all() for o, _ in pairs)
    err = max((o - r).abs().max().item() for o, r in pairs)
    record_parity('flex backbone RMT-T 160x224', err, max(
        ((o - r).abs().max() / r.abs().max()).item() for o, r in pairs))
    assert err < TOL
    assert unfused_flex_calls == []


def test_cpu_template_overrun_is_routed_around_on_avx2(monkeypatch):
    """Axial attention on lines of 8 keys compiled as for AVX2 (8 floats per vector), where
    torch's CPU template overruns its score buffer. Keys are 1e5 times larger in every other
    map row, so the scores the overrun computes from the next row's keys and writes over the
    softmax maxima exceed the true maxima by more than exp() spans: unguarded, the outputs are
    0.46 off."""
    from torch._inductor.cpu_vec_isa import valid_vec_isa_list
    if 'avx2' not in map(str, valid_vec_isa_list()):
        pytest.skip('inductor cannot generate AVX2 code on this CPU')
    monkeypatch.setenv('ATEN_CPU_CAPABILITY', 'avx2')
    monkeypatch.setattr(masa_flex, '_COMPILED', {})  # this AVX2 kernel serves no other test
    assert masa_flex.cpu_keys_need_padding(torch.device('cpu'))
    torch.manual_seed(0)
    relpos = RelPos2d(16, 1, init_value=2, heads_range=4)
    q, k, v = (torch.randn(1, 4, 8, 1, 16) for _ in range(3))
    k = k * torch.tensor([1e-3, 1e2, 1e-3, 1e2]).view(1, 4, 1, 1, 1)
    with torch.no_grad():
        out = masa_decomposed_flex(q, k, v, relpos.decay)
    ref = masa_decomposed(q, k, v, relpos.axis_bias(4), relpos.axis_bias(8))
    assert (out - ref).abs().max().item() < TOL


def test_an_unfused_call_goes_to_the_fallback_with_one_warning(unfused_flex_calls):
    relpos = RelPos2d(64, 4, init_value=2, heads_range=4)
    q, k, v = _projections(5, 6, 4, 16)
    with torch.no_grad():
        ref = masa(q.clone(), k.clone(), v.clone(), relpos, True, 'reference', 0.25)
        with torch.compiler.set_stance('force_eager'):
            with pytest.warns(FlexFallbackWarning, match="uncompiled.*attn_impl='sdpa'"):
                out = masa(q.clone(), k.clone(), v.clone(), relpos, True, 'flex', 0.25)
            with warnings.catch_warnings():
                warnings.simplefilter('error', FlexFallbackWarning)  # once per process
                masa(q.clone(), k.clone(), v.clone(), relpos, True, 'flex', 0.25)
            with pytest.raises(RuntimeError, match='FlexAttention would run uncompiled'):
                masa_full_flex(*(t.flatten(1, 2).transpose(1, 2) for t in (q, k, v)),
                               relpos.decay, 6)
    assert (out - ref).abs().max().item() < TOL
    assert unfused_flex_calls == []


def test_a_cpu_without_vector_code_is_refused_in_one_line(monkeypatch):
    monkeypatch.setenv('ATEN_CPU_CAPABILITY', 'default')
    q, k, v = _projections(5, 6, 4, 16)
    with pytest.raises(RuntimeError, match="needs AVX2 or AVX-512.*attn_impl='blocked'"):
        masa_decomposed_flex(q, k, v, torch.zeros(4))


def test_flex_is_a_listed_kernel():
    assert 'flex' in ATTN_IMPLS


@pytest.mark.parametrize('decomposed', [True, False], ids=['axial', 'full'])
def test_cpu_training_is_refused_with_the_alternatives(decomposed):
    relpos = RelPos2d(32, 2, init_value=2, heads_range=4)
    q, k, v = _projections(3, 4, 2, 16)
    q.requires_grad_()
    with pytest.raises(RuntimeError, match=r"attn_impl='flex' cannot train on CPU.*'blocked'"):
        masa(q, k, v, relpos, decomposed, 'flex', 0.25)


def test_export_right_after_compiled_flex_equals_pytorch(tmp_path):
    """An export after compiled FlexAttention ran in the same process: the file computes the
    function (every kernel exports as MaSA's export form, none as ``flex``)."""
    pytest.importorskip('onnxruntime')
    from rmt_mm.export import export_onnx, verify_onnx
    ref, flex = _models()
    with torch.no_grad():
        flex(torch.randn(1, 3, 45, 61))
    path = str(tmp_path / 'rmt.onnx')
    export_onnx(flex, (45, 61), path, 'torchscript')
    errors = verify_onnx(ref, path, [(45, 61), (64, 48)])
    assert max(max(e.values()) for e in errors.values()) < TOL, errors
