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
