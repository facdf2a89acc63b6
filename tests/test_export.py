"""ONNX export: a backbone exported once runs in onnxruntime (default graph optimizations) at
any input size and equals PyTorch, with each exporter this torch has; tools/export_onnx.py as a
user runs it, in both forms (arch and config)."""
import json
import os

import pytest
import torch

from rmt_mm.compat import ONNX_DYNAMO_EXPORTER
from rmt_mm.models import RMT, ResT, ResTV2, masa_export

from helpers.archs import tiny_arch
from helpers.tools import assert_one_line_error, call_tool, tool_main

pytest.importorskip('onnxruntime')
from rmt_mm.export import SizeError, dynamo_exporter_missing, export_onnx, verify_onnx  # noqa: E402

ARCH = dict(tiny_arch(RMT), depths=[1, 1, 1, 1])
SHAPE = (45, 61)
#: Sizes and aspect ratios the exported files run at besides the traced one: odd, square,
#: tall, wide, larger and smaller than the traced size.
SIZES = [(45, 61), (64, 64), (33, 97), (97, 33), (128, 80), (17, 23)]
#: float32: the exported graph computes the reference function of the same weights.
TOL = 1e-4


@pytest.fixture
def small_blocks(monkeypatch):
    """Attention blocks small enough that the traced size splits every attention into several
    (the blocked path of the export form, with uneven blocks at other sizes)."""
    monkeypatch.setattr(masa_export, 'EXPORT_BLOCK_ELEMS', 4096)


def _model(impl: str = 'blocked') -> RMT:
    torch.manual_seed(0)
    return RMT(ARCH, attn_impl=impl).eval()


def _weights_bytes(model: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


@pytest.mark.parametrize('exporter, opset', [('torchscript', 11), ('dynamo', 18)])
def test_one_file_runs_every_size(tmp_path, small_blocks, exporter, opset):
    if exporter == 'dynamo' and dynamo_exporter_missing():
        pytest.skip(dynamo_exporter_missing())
    model = _model()
    path = str(tmp_path / 'rmt.onnx')
    export_onnx(model, SHAPE, path, exporter, opset)
    errors = verify_onnx(model, path, SIZES)
    assert list(errors) == SIZES
    assert all(list(e) == ['stage1', 'stage2', 'stage3', 'stage4'] for e in errors.values())
    assert max(max(e.values()) for e in errors.values()) < TOL, errors
    # No table of the traced size is baked in: the file is the weights and the graph.
    assert os.path.getsize(path) < 1.6 * _weights_bytes(model) + 2**20
    # The eager model is untouched by the export: its fast path still runs afterwards.
    with torch.no_grad():
        assert len(model(torch.randn(1, 3, *SHAPE))) == 4


def test_every_kernel_exports_the_same_function(tmp_path):
    path = str(tmp_path / 'rmt.onnx')
    for impl in ('reference', 'sdpa'):
        model = _model(impl)
        export_onnx(model, SHAPE, path, 'torchscript')
        errors = verify_onnx(model, path, [SHAPE, (30, 50)])
        assert max(max(e.values()) for e in errors.values()) < TOL, (impl, errors)


@pytest.mark.parametrize('family', [ResT, ResTV2])
def test_rest_exports_at_any_size(tmp_path, family):
    torch.manual_seed(0)
    model = family(tiny_arch(family)).eval()
    path = str(tmp_path / 'rest.onnx')
    export_onnx(model, (64, 96), path, 'torchscript')
    sizes = [(64, 96), (96, 64), (128, 160)]
    errors = verify_onnx(model, path, sizes)
    for size in sizes:  # ResT's outputs reach ~100: float32 rounding relative to them
        with torch.no_grad():
            scale = max(o.abs().max().item() for o in model(torch.randn(1, 3, *size)))
        assert max(errors[size].values()) < TOL * max(1.0, scale), (size, errors[size], scale)


def test_a_static_file_says_which_size_it_takes(tmp_path):
    model = _model()
    path = str(tmp_path / 'rmt.onnx')
    export_onnx(model, SHAPE, path, 'torchscript', dynamic=False)
    assert max(verify_onnx(model, path, [SHAPE])[SHAPE].values()) < TOL
    with pytest.raises(SizeError, match='takes 45x61 images only'):
        verify_onnx(model, path, [(64, 64)])


@pytest.mark.skipif(ONNX_DYNAMO_EXPORTER, reason='this torch has the dynamo exporter')
def test_dynamo_exporter_names_the_torch_it_needs(tmp_path):
    run = call_tool('export_onnx', json.dumps(ARCH), '--shape', *SHAPE, '--out',
                    tmp_path / 'rmt.onnx', '--exporter', 'dynamo')
    assert_one_line_error(run.returncode, run.stderr, 'torch >= 2.5')


@pytest.mark.slow
def test_tool_exports_a_config_backbone_and_verifies_other_sizes(tmp_path):
    out = tmp_path / 'rmt_t.onnx'
    run = call_tool('export_onnx', 'configs/retinanet_rmt_t_coco.py', '--shape', 64, 96,
                    '--out', out, '--exporter', 'torchscript', '--verify', '64x96', '96x64',
                    '80x120')
    assert run.returncode == 0, run.stderr
    assert 'takes any size' in run.stdout and 'opset 11' in run.stdout
    lines = [ln for ln in run.stdout.splitlines() if 'max abs error' in ln]
    assert [ln.split(':')[0] for ln in lines] == [
        f'{size} stage{i}' for size in ('64x96', '96x64', '80x120') for i in (1, 2, 3, 4)]
    assert all(float(ln.rsplit(' ', 1)[1]) < TOL for ln in lines)


def test_tool_refuses_a_misfit_checkpoint_in_one_line(tmp_path):
    ckpt = tmp_path / 'rmt_other.pth'
    torch.save({'state_dict': RMT(dict(ARCH, depths=[1, 1, 2, 1])).state_dict()}, ckpt)
    out = tmp_path / 'rmt.onnx'
    run = call_tool('export_onnx', json.dumps(ARCH), '--shape', *SHAPE, '--out', out,
                    '--checkpoint', ckpt, '--exporter', 'torchscript')
    assert_one_line_error(run.returncode, run.stderr, str(ckpt))
    assert not out.exists()


def test_tool_refuses_a_bad_verify_size_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit):
        tool_main('export_onnx')([json.dumps(ARCH), '--shape', '45', '61', '--out',
                                  str(tmp_path / 'rmt.onnx'), '--verify', '64by64'])
    assert "'64by64' is not HxW" in capsys.readouterr().err


def test_benchmark_measures_onnxruntime_beside_eager(capsys):
    """tools/benchmark.py --onnx: the exported RMT-T and PyTorch eager timed side by side,
    peak memory of each from a fresh process."""
    tool_main('benchmark')(['--onnx', 'torchscript', '--arch', 't', '--size', '64', '96',
                            '--mode', 'infer', '--threads', '1', '--repeats', '1',
                            '--warmup', '0'])
    out = capsys.readouterr().out
    assert '| blocked s (CPU s) | onnxruntime s (CPU s) |' in out
    row = next(ln for ln in out.splitlines() if ln.startswith('| t | infer |'))
    numbers = [float(v.strip('()x')) for cell in row.split('|')[3:-1] for v in cell.split()]
    assert len(numbers) == 12 and all(v > 0 for v in numbers), row


@pytest.mark.parametrize('argv, parts', [
    (['--onnx', 'torchscript', '--mode', 'train'], ['--onnx measures CPU float32 inference']),
    (['--arch', 't', 'xl', '--repeats', '0'], ['--arch xl', 'not an RMT size']),
    (['--size', '0', '64', '--repeats', '0'], ['--size 0 64', 'positive integers']),
])
def test_benchmark_refuses_bad_arguments_in_one_line(argv, parts):
    """A wrong argument is named before anything is built (a size or arch the memory child
    cannot take used to surface as the parent's CalledProcessError)."""
    run = call_tool('benchmark', *argv)
    assert_one_line_error(run.returncode, run.stderr, *parts)


def test_a_static_file_folds_no_attention_table(tmp_path):
    """With a fixed input size every position table is a function of constants: onnxruntime's
    constant folding (at session start) must not turn the attention biases into stored
    tables. The optimized graph onnxruntime writes stays the weights' size."""
    import onnxruntime
    path, optimized = tmp_path / 'rmt.onnx', tmp_path / 'optimized.onnx'
    model = _model()
    export_onnx(model, (512, 512), str(path), 'torchscript', dynamic=False)
    options = onnxruntime.SessionOptions()
    options.optimized_model_filepath = str(optimized)
    onnxruntime.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])
    assert optimized.stat().st_size <= 1.6 * _weights_bytes(model) + 2**20
