"""The tools as the tests run them: ``main(argv)`` in this process (no interpreter start-up and
imports per run), or ``python tools/...`` in a fresh process where only that shows what a test
checks: the exit status through ``sys.exit``, what reaches stderr outside pytest's capture, a
process killed mid-way, several processes (``dist_train.sh``), or tools without ``main(argv)``."""
import contextlib
import importlib.util
import io
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Callable, Dict, List, Optional, Sequence

import pytest

from . import REPO


@dataclass
class ToolRun:
    """An in-process tool run: exit status and what the tool printed (logs included)."""
    returncode: int
    stdout: str
    stderr: str


def tool_module(name: str) -> ModuleType:
    """``tools/<name>.py`` loaded as a module (the tools are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f'tool_{name}', REPO / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tool_main(name: str) -> Callable[[Optional[List[str]]], Optional[int]]:
    """``tools/<name>.py``'s ``main(argv)``."""
    return tool_module(name).main


def call_tool(name: str, *args: object) -> ToolRun:
    """``tools/<name>.py ARGS`` through its ``main`` in this process, stdout and stderr captured
    (also in module-scoped fixtures, where ``capsys`` is not available)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = tool_main(name)([str(a) for a in args])
    return ToolRun(code or 0, out.getvalue(), err.getvalue())


def free_port() -> int:
    """A local TCP port nothing listens on now, for a launcher's store."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run_tool(args: Sequence[object], timeout: int = 600, env: Optional[Dict[str, str]] = None,
             python_script: bool = True, check: bool = True,
             show_warnings: bool = False) -> subprocess.CompletedProcess:
    """``python ARGS`` (or ``ARGS`` unless ``python_script``) in a fresh process from the
    repository root, with one BLAS thread unless OMP_NUM_THREADS says otherwise; Python's
    warnings are silenced unless ``show_warnings``. With ``check``, a non-zero exit fails the
    test with the tool's output."""
    full_env = dict(os.environ, OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS', '1'))
    if not show_warnings:
        full_env['PYTHONWARNINGS'] = 'ignore'
    full_env.update(env or {})
    cmd = ([sys.executable] if python_script else []) + [str(a) for a in args]
    # Its own process group, so that a timeout stops the tool's workers too (torchrun's ranks
    # would otherwise run on beside the rest of the suite) and the failure shows their output.
    with subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, start_new_session=True) as child:
        try:
            stdout, stderr = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            stdout, stderr = child.communicate()
            pytest.fail(f'{" ".join(cmd)} ran past {timeout} s:\n{stdout[-3000:]}\n'
                        f'{stderr[-5000:]}')
    proc = subprocess.CompletedProcess(cmd, child.returncode, stdout, stderr)
    if check:
        assert proc.returncode == 0, f'{" ".join(cmd)} failed:\n{proc.stdout[-3000:]}\n' \
                                     f'{proc.stderr[-5000:]}'
    return proc


def assert_one_line_error(code: int, err: str, *parts: str) -> str:
    """A failed tool run as the user sees it: non-zero exit, exactly one ``error:`` line on
    stderr holding every part, no traceback and no advice to turn safe loading off."""
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code != 0, err
    assert len(lines) == 1 and lines[0].startswith('error: '), err
    assert 'Traceback' not in err and 'weights_only' not in err, err
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return lines[0]
