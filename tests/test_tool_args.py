"""Every tool answers a wrong argument with one line naming it, and missing arguments with its
usage: no traceback. The Python tools run in this process (their ``main(argv)``), the
launchers as the shell scripts they are."""
import importlib.util
import subprocess
from pathlib import Path
from typing import List

import pytest

from helpers import REPO

TOOLS = REPO / 'tools'
#: tool -> (wrong arguments, what the one line must name). Paths are made absent on purpose.
WRONG = {
    'train.py': (['absent.py'], 'absent.py'),
    'test.py': (['absent.py', 'absent.pth'], 'absent.py'),
    'demo.py': (['absent.png', 'configs/demo/maskrcnn_rmt_t_shapes.py', 'absent.pth'],
                'absent'),
    'convert_imagenet_ckpt.py': (['absent.pth', 'out.pth'], 'absent.pth'),
    'init_checkpoint.py': (['absent.py', 'out.pth'], 'absent.py'),
    'export_onnx.py': (['rmt_zz', '--shape', '64', '64', '--out', 'x.onnx'], 'zz'),
    'get_flops.py': (['--arch', 'zz'], 'zz'),
    'benchmark.py': (['--arch', 'zz'], 'zz'),
    'model_zoo.py': (['--family', 'NoSuchFamily'], 'NoSuchFamily'),
    'make_shapes_coco.py': (['out', '--num-train', 'many'], 'many'),
    'make_shapes_ade.py': (['out', '--size', '10'], '--size'),
    'seg_demo.py': (['absent_untrained', 'absent_trained'], 'absent_untrained'),
    'device_check.py': (['--out', 'out', '--parts', 'nothing'], 'nothing'),
}
LAUNCHERS = ['dist_train.sh', 'dist_test.sh', 'slurm_train.sh', 'slurm_test.sh']


def _main(tool: str):
    spec = importlib.util.spec_from_file_location(f'tool_{Path(tool).stem}', TOOLS / tool)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _run(tool: str, argv: List[str], capsys) -> List[str]:
    """Exit status (non-zero expected) and the tool's stderr lines."""
    try:
        status = _main(tool)(argv)
    except SystemExit as exit_:
        status = exit_.code
    err = capsys.readouterr().err
    assert status not in (0, None), f'{tool} {argv} succeeded'
    assert 'Traceback' not in err
    return [line for line in err.splitlines() if line.strip()]


def test_every_tool_is_listed():
    """(deploy.py and sdk_infer.py need mmdeploy or its runtime: test_deploy.py and
    test_sdk.py drive them with wrong input.)"""
    assert sorted([*WRONG, *LAUNCHERS]) == sorted(
        p.name for p in TOOLS.iterdir() if p.suffix in ('.py', '.sh')
        and p.name not in ('sdk_infer.py', 'deploy.py', 'launcher_lib.sh'))


@pytest.mark.parametrize('tool', sorted(WRONG))
def test_a_wrong_argument_is_one_line(tool, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv, named = WRONG[tool]
    argv = [str(REPO / a) if a.startswith('configs/') else a for a in argv]
    lines = _run(tool, argv, capsys)
    errors = [line for line in lines if 'error' in line]
    assert len(errors) == 1 and named in errors[0], lines
    assert all(line.startswith('usage:') or line.startswith(' ') or line in errors
               for line in lines), lines


@pytest.mark.parametrize('tool', sorted(t for t in WRONG if t not in (
    'get_flops.py', 'benchmark.py', 'model_zoo.py', 'make_shapes_coco.py')))
def test_missing_arguments_show_the_usage(tool, capsys):
    """(The four left out run with no arguments: they have defaults for everything or one
    required choice, checked above.)"""
    lines = _run(tool, [], capsys)
    assert lines[0].startswith('usage:') and 'required' in lines[-1], lines


@pytest.mark.parametrize('launcher', LAUNCHERS)
def test_a_launcher_without_arguments_shows_its_usage(launcher):
    result = subprocess.run(['bash', str(TOOLS / launcher)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0
    assert 'unbound variable' not in result.stderr
    assert 'usage' in result.stderr.lower(), result.stderr


#: An arch swapped into a config written for another: (config, options, what the line names).
SWAPPED = [
    ('dino-4scale_rmt-t_8xb2-12e_coco.py', ['model.backbone.arch=b'],
     "model.neck.in_channels is [128, 256, 512], but model.backbone (RMT arch 'b', out_indices "
     "[1, 2, 3]) gives [160, 320, 512] channels"),
    ('mask2former_rmt-s_8xb2-160k_ade20k-512x512.py', ['model.backbone.arch=l'],
     "model.decode_head.in_channels is [64, 128, 256, 512], but model.backbone (RMT arch 'l', "
     'out_indices [0, 1, 2, 3]) gives [112, 224, 448, 640] channels'),
    ('upernet_rmt_s_ade20k-512x512-160k.py', ['model.auxiliary_head.in_channels=512'],
     "model.auxiliary_head.in_channels is [512], but model.backbone (RMT arch 'small', "
     'out_indices [0, 1, 2, 3]) gives [256] channels'),
    ('maskrcnn_rest_s_coco.py', ['model.backbone.arch=base'],
     'model.neck.in_channels is [64, 128, 256, 512], but model.backbone (ResT arch'),
]


@pytest.mark.parametrize('config,options,line', SWAPPED, ids=[c for c, _, _ in SWAPPED])
def test_a_head_that_does_not_fit_the_backbone_is_one_line(config, options, line, capsys):
    """Before anything is built or read: both widths and where each comes from."""
    lines = _run('train.py', [str(REPO / 'configs' / config), '--cfg-options', *options],
                 capsys)
    assert len(lines) == 1 and lines[0].startswith(f'error: {line}'), lines


def test_every_config_fits_its_backbone():
    from rmt_mm.cli import check_channels, load_config
    for config in sorted((REPO / 'configs').glob('**/*.py')):
        if '_base_' not in config.parts and 'deploy' not in config.parts:
            check_channels(load_config(str(config))[0])
