"""The launchers (tools/{dist,slurm}_{train,test}.sh) answer a missing or bad argument with one
line naming it, then the usage, instead of bash's ``$1: unbound variable``."""
import os
import subprocess
import sys
from typing import Dict

import pytest

from helpers import REPO

LAUNCHERS = ['dist_train.sh', 'dist_test.sh', 'slurm_train.sh', 'slurm_test.sh']


def _env(**extra: str) -> Dict[str, str]:
    """The environment the launchers run the tools with: this interpreter, one BLAS thread."""
    return dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore',
                PYTHON=sys.executable, **extra)


@pytest.mark.parametrize('launcher', LAUNCHERS)
def test_launchers_name_a_missing_argument_and_show_the_usage(launcher):
    proc = subprocess.run(['bash', str(REPO / 'tools' / launcher)], capture_output=True,
                          text=True, env=_env())
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 2, proc.stderr
    assert lines[0] == f'{launcher}: missing argument ' + (
        'PARTITION' if launcher.startswith('slurm') else 'CONFIG'), lines
    assert lines[1].startswith('usage:') and 'unbound' not in proc.stderr


@pytest.mark.parametrize('launcher,args,env,line', [
    ('dist_train.sh', ['c.py', 'two'], {},
     "NPROC_PER_NODE must be a whole number >= 1, got 'two'"),
    ('dist_test.sh', ['c.py', 'x.pth', '2'], dict(NNODES='2', NODE_RANK='2'),
     "NODE_RANK must be below NNODES (2), got '2'"),
    ('slurm_train.sh', ['p', 'j', 'c.py', 'w'], dict(GPUS='0', TASKS='many'),
     "TASKS must be a whole number >= 1, got 'many'"),
    ('slurm_test.sh', ['p', 'j', 'c.py', 'x.pth'], dict(GPUS='-1'),
     "GPUS must be a whole number >= 0, got '-1'")])
def test_launchers_refuse_a_bad_count_in_one_line(launcher, args, env, line):
    proc = subprocess.run(['bash', str(REPO / 'tools' / launcher), *args],
                          capture_output=True, text=True, env=_env(**env))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 2, proc.stderr
    assert lines[0] == f'{launcher}: {line}' and lines[1].startswith('usage:')
