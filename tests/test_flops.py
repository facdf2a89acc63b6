"""FLOP counts agree with fvcore on the upstream models, whatever attention kernel is used."""
import importlib.util
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / 'tools' / 'get_flops.py'


def _get_flops():
    spec = importlib.util.spec_from_file_location('get_flops', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# fvcore on the upstream detection backbone at 224x224 (shared/reference/rmt.md, section 3.5).
@pytest.mark.parametrize('arch,gflops', [('t', 2.626), ('s', 4.775)])
def test_backbone_flops_match_upstream_fvcore(arch, gflops, capsys):
    _get_flops().main(['--arch', arch, '--shape', '224', '224'])
    counted = float(capsys.readouterr().out.split('FLOPs ')[1].split(' G')[0])
    assert counted == pytest.approx(gflops, abs=0.006)


def _counted(capsys) -> float:
    return float(capsys.readouterr().out.split('FLOPs ')[1].split(' G')[0])


@pytest.mark.parametrize('config', ['maskrcnn_rmt_t_shapes', 'mask2former_rmt-t_shapes-seg'])
def test_a_whole_model_counts_its_backbone_and_more(config, capsys):
    """--config: a detector's or segmentor's FLOPs hold its RMT-T backbone's at that size."""
    tool = _get_flops()
    tool.main(['--arch', 't', '--shape', '128', '160'])
    backbone = _counted(capsys)
    tool.main(['--config', str(TOOL.parents[1] / 'configs' / 'demo' / f'{config}.py'),
               '--shape', '128', '160'])
    assert _counted(capsys) > backbone + 0.1
