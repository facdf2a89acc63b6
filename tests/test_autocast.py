"""Every MaSA kernel under CPU autocast: finite, within bf16/fp16 tolerance of float32, and the
position tables handed to the kernels in the autocast dtype."""
import pytest
import torch

from rmt_mm.models import RMT
from rmt_mm.models import masa as masa_module
from rmt_mm.parity import AUTOCAST_GRAD_TOL, AUTOCAST_TOL, rel_l2_err, rel_max_err, run_model

from helpers.archs import build_tiny


def _model(impl):
    torch.manual_seed(0)
    return build_tiny(RMT, attn_impl=impl, drop_path_rate=0.0)


@pytest.fixture(scope='module')
def inputs_and_reference():
    torch.manual_seed(1)
    x = torch.randn(1, 3, 37, 45)
    return x, run_model(_model('reference'), x, train=True)


@pytest.mark.parametrize('impl', ['reference', 'sdpa', 'blocked'])
def test_bf16_forward_and_backward_within_tolerance(impl, inputs_and_reference):
    x, (ref_outs, ref_grads) = inputs_and_reference
    outs, grads = run_model(_model(impl), x, train=True, amp=torch.bfloat16)
    # The reference adds upstream's float32 bias, which promotes its attention to float32.
    assert all(o.dtype == torch.bfloat16 for o in outs) or impl == 'reference'
    assert all(t.isfinite().all() for t in outs + grads)
    assert max(rel_max_err(o, r) for o, r in zip(outs, ref_outs)) < AUTOCAST_TOL['bfloat16']
    assert rel_l2_err(grads, ref_grads) < AUTOCAST_GRAD_TOL['bfloat16']


def _cpu_autocast_takes_fp16() -> bool:
    """torch < 2.3 autocasts to bfloat16 only on CPU ("AutocastCPU only support Bfloat16")."""
    try:
        with torch.autocast('cpu', dtype=torch.float16):
            return True
    except RuntimeError:
        return False


@pytest.mark.skipif(not _cpu_autocast_takes_fp16(), reason="this torch's CPU autocast is bf16 only")
@pytest.mark.parametrize('impl', ['reference', 'sdpa', 'blocked'])
def test_fp16_forward_within_tolerance(impl, inputs_and_reference):
    x, (ref_outs, _) = inputs_and_reference
    outs, _ = run_model(_model(impl), x, train=False, amp=torch.float16)
    assert all(o.isfinite().all() for o in outs)
    assert all(o.dtype == torch.float16 for o in outs) or impl == 'reference'
    assert max(rel_max_err(o, r) for o, r in zip(outs, ref_outs)) < AUTOCAST_TOL['float16']


def test_kernels_see_tables_in_the_autocast_dtype(monkeypatch, inputs_and_reference):
    seen = []
    kernel = masa_module.FAST_KERNELS['sdpa']

    def spy(q, k, v, tables, overwrite_v):
        seen.append((q.dtype, k.dtype, v.dtype, tables.bias_h.dtype, tables.bias_w.dtype))
        return kernel.decomposed(q, k, v, tables, overwrite_v)

    monkeypatch.setitem(masa_module.FAST_KERNELS, 'sdpa', kernel._replace(decomposed=spy))
    run_model(_model('sdpa'), inputs_and_reference[0], train=True, amp=torch.bfloat16)
    assert seen and all(set(dtypes) == {torch.bfloat16} for dtypes in seen)
