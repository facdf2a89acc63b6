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


def test_cpu_slurm_start_takes_mmengines_variables(monkeypatch):
    """Without CUDA, ``--launcher slurm`` sets what mmengine's ``_init_dist_slurm`` would
    (rank, world size, local rank, the first node as master, port 29500) and starts gloo."""
    import torch.distributed as torch_dist
    from mmengine.config import Config

    from rmt_mm import cli
    started = {}
    monkeypatch.setattr(cli.torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(torch_dist, 'init_process_group', lambda **kw: started.update(kw))
    for key in ('MASTER_ADDR', 'MASTER_PORT', 'RANK', 'WORLD_SIZE', 'LOCAL_RANK'):
        # Set first so that monkeypatch removes what the launcher sets: a MASTER_ADDR left
        # behind sends later torchrun tests to node7.
        monkeypatch.setenv(key, '')
        monkeypatch.delenv(key)
    monkeypatch.setenv('PATH', '')  # no scontrol: a one-node list names the host
    monkeypatch.setenv('SLURM_PROCID', '3')
    monkeypatch.setenv('SLURM_NTASKS', '4')
    monkeypatch.setenv('SLURM_LOCALID', '1')
    monkeypatch.setenv('SLURM_NODELIST', 'node7')
    cfg = Config(dict(launcher='slurm'))
    cli.setup_cpu_distributed(cfg)
    assert started['backend'] == 'gloo'
    assert {k: os.environ[k] for k in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR',
                                       'MASTER_PORT')} == dict(
        RANK='3', WORLD_SIZE='4', LOCAL_RANK='1', MASTER_ADDR='node7', MASTER_PORT='29500')
    assert cfg.model_wrapper_cfg['device_ids'] is None


def test_slurm_launcher_outside_slurm_is_one_line(monkeypatch):
    from mmengine.config import Config

    from rmt_mm import cli
    from rmt_mm.errors import ConfigError
    monkeypatch.setattr(cli.torch.cuda, 'is_available', lambda: False)
    monkeypatch.delenv('SLURM_PROCID', raising=False)
    with pytest.raises(ConfigError, match=r'^--launcher slurm: SLURM_PROCID is not set \(start '
                       r'the tool with srun'):
        cli.setup_cpu_distributed(Config(dict(launcher='slurm')))
