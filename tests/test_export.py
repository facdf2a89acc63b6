"""ONNX export with both exporters for every kernel, checked with onnxruntime, and
tools/export_onnx.py as a user runs it."""
import json

import pytest
import torch

from rmt_mm.models import RMT

from helpers.archs import tiny_arch
from helpers.tools import assert_one_line_error, call_tool

pytest.importorskip('onnxruntime')
pytest.importorskip('onnxscript')  # the dynamo exporter's dependency
from rmt_mm.export import export_onnx, verify_onnx  # noqa: E402

ARCH = dict(tiny_arch(RMT), depths=[1, 1, 1, 1])
SHAPE = (45, 61)
#: float32 rounding: the exported graph is the reference formulation of the same weights.
TOL = 1e-5

pytestmark = pytest.mark.slow  # each dynamo export takes ~20 s on two cores


@pytest.mark.parametrize('exporter', ['torchscript', 'dynamo'])
@pytest.mark.parametrize('impl', ['reference', 'sdpa', 'blocked'])
def test_onnxruntime_matches_pytorch(tmp_path, impl, exporter):
    if exporter == 'dynamo' and impl != 'blocked':
        pytest.skip('one dynamo export (the default kernel) keeps the suite short')
    torch.manual_seed(0)
    model = RMT(ARCH, attn_impl=impl).eval()
    path = str(tmp_path / 'rmt.onnx')
    export_onnx(model, SHAPE, path, exporter)
    errors = verify_onnx(model, path, SHAPE)
    assert list(errors) == ['stage1', 'stage2', 'stage3', 'stage4']
    assert max(errors.values()) < TOL, errors
    # The eager model is untouched by the export: its fast path still runs afterwards.
    with torch.no_grad():
        assert len(model(torch.randn(1, 3, *SHAPE))) == 4


def test_tool_exports_and_verifies(tmp_path):
    out = tmp_path / 'rmt.onnx'
    run = call_tool('export_onnx', json.dumps(ARCH), '--shape', *SHAPE, '--out', out,
                    '--exporter', 'torchscript', '--verify')
    assert run.returncode == 0, run.stderr
    assert out.stat().st_size > 0
    lines = [ln for ln in run.stdout.splitlines() if 'max abs error' in ln]
    assert [ln.split(':')[0] for ln in lines] == ['stage1', 'stage2', 'stage3', 'stage4']
    assert all(float(ln.rsplit(' ', 1)[1]) < TOL for ln in lines)


def test_tool_refuses_a_misfit_checkpoint_in_one_line(tmp_path):
    ckpt = tmp_path / 'rmt_other.pth'
    torch.save({'state_dict': RMT(dict(ARCH, depths=[1, 1, 2, 1])).state_dict()}, ckpt)
    out = tmp_path / 'rmt.onnx'
    run = call_tool('export_onnx', json.dumps(ARCH), '--shape', *SHAPE, '--out', out,
                    '--checkpoint', ckpt, '--exporter', 'torchscript')
    assert_one_line_error(run.returncode, run.stderr, str(ckpt))
    assert not out.exists()
