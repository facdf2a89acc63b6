"""Training that survives the cluster, on this machine's CPUs (gloo), with the demo config on a
tiny generated set: a preempted torchrun run and a twice-preempted Slurm job (a real one-node
Slurm, scripts/slurm_cluster.sh) end bit-identical to an uninterrupted run; two torchrun nodes
equal one node of the same world size; 2-rank evaluation through tools/dist_test.sh and
tools/slurm_test.sh gives the 1-rank metrics (docs/cluster.md)."""
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pytest
import torch
from test_cluster_launchers import _env

from rmt_mm.checkpoints.reading import safe_load
from rmt_mm.datasets.shapes import make_shapes_coco
from rmt_mm.datasets.shapes_seg import make_shapes_ade

from helpers import REPO
from helpers.det import DEMO_CONFIG, data_options
from helpers.seg import DEMO_CONFIG as SEG_DEMO_CONFIG
from helpers.tools import free_port, run_tool

ITERS = 8
#: Small and quick: 128 px images, few proposals, a log line per iteration, and no interval
#: checkpoint before the end, so a resumed run can only start from the preemption's.
OPTIONS = ['model.train_cfg.rpn_proposal.max_per_img=100', 'model.test_cfg.rpn.max_per_img=50',
           'default_hooks.logger.interval=1', f'default_hooks.checkpoint.interval={ITERS}',
           f'train_cfg.max_iters={ITERS}', f'train_cfg.val_interval={ITERS * 10}']


#: Minutes of end-to-end runs: `make test-cluster` (RMT_MM_CLUSTER_TESTS=1), not `make test`.
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1800), pytest.mark.skipif(
    os.environ.get('RMT_MM_CLUSTER_TESTS') != '1',
    reason='cluster tests run with make test-cluster (RMT_MM_CLUSTER_TESTS=1)')]


@pytest.fixture(scope='module')
def shapes(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp('shapes')
    make_shapes_coco(str(root), num_train=8, num_val=4, seed=5, size_range=(96, 128))
    return str(root)


def _options(shapes: str) -> List[str]:
    return ['--cfg-options', *data_options(shapes), *OPTIONS]


def _dist_train(work_dir: Path, shapes: str, nproc: int, *extra: str,
                env: Optional[Dict[str, str]] = None, options: Sequence[str] = (),
                **popen) -> subprocess.Popen:
    return subprocess.Popen(
        ['bash', str(REPO / 'tools' / 'dist_train.sh'), str(DEMO_CONFIG), str(nproc),
         '--work-dir', str(work_dir), *extra, *_options(shapes), *options], cwd=REPO,
        env=env or _env(PORT=str(free_port())), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, **popen)


def _finish(proc: subprocess.Popen, timeout: int = 600) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-5000:]
    return out


def _state(path: Path) -> Dict[str, torch.Tensor]:
    """Weights and optimizer state of a checkpoint, flattened."""
    checkpoint = safe_load(str(path))
    state = {f'weights.{k}': v for k, v in checkpoint['state_dict'].items()}
    for index, tensors in checkpoint['optimizer']['state'].items():
        state.update({f'optimizer.{index}.{k}': torch.as_tensor(v) for k, v in tensors.items()})
    return state


def _assert_identical(path: Path, reference: Dict[str, torch.Tensor]) -> None:
    state = _state(path)
    assert state.keys() == reference.keys()
    differing = [k for k in reference if not torch.equal(state[k], reference[k])]
    assert not differing, f'{len(differing)}/{len(reference)} tensors differ: {differing[:3]}'


@pytest.fixture(scope='module')
def reference(tmp_path_factory, shapes) -> Dict[str, torch.Tensor]:
    """Weights and optimizer state after an uninterrupted 2-process run."""
    work_dir = tmp_path_factory.mktemp('reference')
    _finish(_dist_train(work_dir, shapes, 2))
    return _state(work_dir / f'iter_{ITERS}.pth')


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f'timed out waiting for {what}'
        time.sleep(0.5)


def _log(work_dir: Path) -> str:
    return ''.join(p.read_text(errors='replace') for p in sorted(work_dir.glob('*/*.log')))


def test_torchrun_preempted_by_sigterm_resumes_bit_identical(reference, shapes, tmp_path):
    """SIGTERM to the launcher's process group (torchrun and both workers) in iteration 3 or
    later: the run saves after the iteration in progress and exits 75 in the workers; --resume
    without a path continues from there to the uninterrupted run's weights and optimizer."""
    proc = _dist_train(tmp_path, shapes, 2, start_new_session=True)
    _wait_for(lambda: 'Iter(train) [2/' in _log(tmp_path), 'iteration 2')
    os.killpg(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0, out[-3000:]
    log = _log(tmp_path)
    match = re.search(r'preemption: SIGTERM arrived in iteration (\d+); all 2 ranks stop after '
                      r'iteration (\d+) and save iter_(\d+)\.pth', log)
    assert match, out[-5000:]
    arrived, stopped, _ = map(int, match.groups())
    assert stopped - arrived <= 1 and stopped < ITERS  # at most the iteration then running
    assert 'exit 75, continue with --resume' in log
    saved = sorted(p.name for p in tmp_path.glob('*.pth'))
    assert saved == [f'iter_{stopped}.pth'], saved
    _finish(_dist_train(tmp_path, shapes, 2, '--resume'))
    assert f'auto-resume: resuming from {tmp_path / f"iter_{stopped}.pth"}' in _log(tmp_path)
    _assert_identical(tmp_path / f'iter_{ITERS}.pth', reference)


def test_two_torchrun_nodes_equal_one_node(reference, shapes, tmp_path):
    """NNODES=2 with NODE_RANK 0 and 1 (one process each, node 0 the master) on this machine
    ends bit-identical to one node with 2 processes."""
    port = str(free_port())
    nodes = [_dist_train(tmp_path, shapes, 1, env=_env(NNODES='2', NODE_RANK=str(rank),
                                                       MASTER_ADDR='127.0.0.1', PORT=port))
             for rank in (0, 1)]
    for node in nodes:
        _finish(node)
    assert 'GPU number: 2' in _log(tmp_path)  # mmengine's name for the world size
    _assert_identical(tmp_path / f'iter_{ITERS}.pth', reference)


def test_a_killed_rank_stops_the_other_node_within_a_bound_naming_it(reference, shapes, tmp_path):
    """Two torchrun nodes (one process each), node 1's worker killed with SIGKILL in iteration
    3 or later: node 0's rank exits within a minute with one line naming rank 1 (its collective
    fails and RankWatchdogHook names the rank whose heartbeats stopped), the checkpoints on
    disk are whole, and --resume on one node of 2 processes ends at the uninterrupted run's
    weights and optimizer state."""
    port = str(free_port())
    nodes = [_dist_train(tmp_path, shapes, 1, env=_env(NNODES='2', NODE_RANK=str(rank),
                                                       MASTER_ADDR='127.0.0.1', PORT=port),
                         options=['default_hooks.checkpoint.interval=2'])
             for rank in (0, 1)]
    _wait_for(lambda: 'Iter(train) [3/' in _log(tmp_path), 'iteration 3')
    children = Path(f'/proc/{nodes[1].pid}/task/{nodes[1].pid}/children').read_text().split()
    assert len(children) == 1, children  # node 1's only worker
    os.kill(int(children[0]), signal.SIGKILL)
    killed = time.monotonic()
    out, _ = nodes[0].communicate(timeout=300)
    elapsed = time.monotonic() - killed
    nodes[1].communicate(timeout=300)
    errors = [line for line in out.splitlines() if line.startswith('error: ')]
    assert nodes[0].returncode != 0 and len(errors) == 1, out[-5000:]
    assert errors[0].startswith('error: rank 1 (') and 'rank 0 stops too' in errors[0], errors
    assert elapsed < 60, elapsed
    print(f'rank 0 exited {elapsed:.1f} s after rank 1 was killed: {errors[0]}')
    saved = sorted(tmp_path.glob('iter_*.pth'))
    assert saved, 'no checkpoint before the kill'
    for path in saved:
        safe_load(str(path))  # whole: the writes are atomic
    _finish(_dist_train(tmp_path, shapes, 2, '--resume'))
    _assert_identical(tmp_path / f'iter_{ITERS}.pth', reference)


# --- Slurm ----------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def slurm(tmp_path_factory) -> Dict[str, str]:
    """A one-node Slurm cluster for this module (stopped at its end), as the environment for
    its clients; skipped with the reason when its packages cannot be installed."""
    script = REPO / 'scripts' / 'slurm_cluster.sh'
    installed = subprocess.run(['bash', str(script), 'install'], capture_output=True, text=True)
    if installed.returncode:
        pytest.skip(f'no Slurm: {installed.stderr.strip()}')
    # Slurm's socket paths must be short: a directory under /tmp, not pytest's deep one.
    directory = Path(subprocess.check_output(['mktemp', '-d', '/tmp/rmt-slurm.XXXX'],
                                             text=True).strip())
    started = subprocess.run(['bash', str(script), 'start', str(directory)],
                             capture_output=True, text=True)
    try:
        assert started.returncode == 0, started.stderr
        yield _env(SLURM_CONF=str(directory / 'slurm.conf'), GPUS='0', TASKS='2',
                   CPUS_PER_TASK='1', MASTER_PORT=str(free_port()))
    finally:
        subprocess.run(['bash', str(script), 'stop', str(directory)], capture_output=True)
        shutil.rmtree(directory, ignore_errors=True)


def _scontrol_state(job: str, env: Dict[str, str]) -> Dict[str, str]:
    out = subprocess.run(['scontrol', 'show', 'job', job], capture_output=True, text=True,
                         env=env).stdout
    return dict(re.findall(r'(\w+)=(\S*)', out))


#: docs/cluster.md's job script: requeue when the run was preempted (exit 75). The trap keeps
#: the batch shell alive until srun has ended when Slurm signals the whole job.
JOB_SCRIPT = """#!/bin/bash
trap 'echo "batch shell: signalled"' TERM USR1
{launcher} debug demo {config} {work_dir} --resume {options}
rc=$?
if [ $rc -eq 75 ]; then scontrol requeue "$SLURM_JOB_ID"; fi
exit $rc
"""


@pytest.fixture(scope='module')
def slurm_trained(slurm, shapes, tmp_path_factory) -> Dict[str, object]:
    """The demo config trained as an ``sbatch --requeue`` job of 2 CPU tasks through
    tools/slurm_train.sh, preempted twice: ``scancel --signal=TERM`` (the job script requeues
    the run's exit 75) and ``scontrol requeue`` (Slurm requeues it, SIGTERM first)."""
    tmp = tmp_path_factory.mktemp('slurm-train')
    work_dir, output = tmp / 'work', tmp / 'job.out'
    script = tmp / 'job.sh'
    script.write_text(JOB_SCRIPT.format(
        launcher=REPO / 'tools' / 'slurm_train.sh', config=DEMO_CONFIG, work_dir=work_dir,
        options=' '.join(f"'{o}'" for o in _options(shapes))))
    job = subprocess.run(['sbatch', '--parsable', '--requeue', '--open-mode=append',
                          '--ntasks=2', '--cpus-per-task=1', f'--output={output}', str(script)],
                         capture_output=True, text=True, env=slurm, cwd=REPO, check=True)
    job_id = job.stdout.strip().split(';')[0]
    text = lambda: output.read_text(errors='replace') if output.exists() else ''  # noqa: E731
    _wait_for(lambda: 'Iter(train) [2/' in text(), 'iteration 2 of the first start')
    subprocess.run(['scancel', '--signal=TERM', job_id], env=slurm, check=True)
    _wait_for(lambda: _scontrol_state(job_id, slurm).get('Restarts') == '1', 'the requeue')
    _wait_for(lambda: 'preemption: saved' in text() and re.search(
        r'Iter\(train\) \[\d+/', text().split('preemption: saved', 1)[1]),
        'an iteration of the second start')
    subprocess.run(['scontrol', 'requeue', job_id], env=slurm, check=True)
    _wait_for(lambda: _scontrol_state(job_id, slurm).get('JobState') in ('COMPLETED', 'FAILED'),
              'the job to end', timeout=600)
    state = _scontrol_state(job_id, slurm)
    assert state['JobState'] == 'COMPLETED', text()[-5000:]
    return dict(work_dir=work_dir, output=text(), restarts=int(state['Restarts']))


def test_slurm_job_preempted_twice_resumes_bit_identical(slurm_trained, reference):
    out = slurm_trained['output']
    assert slurm_trained['restarts'] == 2, out[-3000:]
    stops = re.findall(r'preemption: SIGTERM arrived in iteration (\d+); all 2 ranks stop '
                       r'after iteration (\d+)', out)
    assert len(stops) == 2, out[-5000:]
    assert all(int(stop) - int(arrived) <= 1 for arrived, stop in stops), stops
    assert out.count('auto-resume: resuming from') == 2
    assert 'Distributed launcher: slurm' in out and 'GPU number: 2' in out
    _assert_identical(slurm_trained['work_dir'] / f'iter_{ITERS}.pth', reference)


def _evaluate(config: Path, checkpoint: str, options: List[str], slurm: Dict[str, str],
              tmp_path: Path, metric: str, out_suffix: str) -> Tuple[Dict, Dict]:
    """``metric`` values (regular expression of their names) and the predictions (``--out``:
    a .pkl's content, or the bytes of each file a directory holds) from tools/test.py with 1
    rank, tools/dist_test.sh and tools/slurm_test.sh with 2 ranks each."""
    args = [str(config), checkpoint]
    runs = dict(one=[sys.executable, 'tools/test.py', *args],
                torchrun=['bash', 'tools/dist_test.sh', *args, '2'],
                slurm=['bash', 'tools/slurm_test.sh', 'debug', 'test', *args])
    found, predictions = {}, {}
    for name, command in runs.items():
        out = tmp_path / 'predictions' / f'{name}{out_suffix}'  # beside the work dirs
        proc = run_tool([*command, '--work-dir', str(tmp_path / name), '--out', str(out),
                         '--cfg-options', *options],
                        env=dict(slurm, PORT=str(free_port())), python_script=False)
        found[name] = dict(re.findall(rf'({metric}): (-?[\d.]+)', proc.stdout + proc.stderr))
        predictions[name] = _comparable(pickle.loads(out.read_bytes())) if out.is_file() else {
            str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob('*'))
            if p.is_file()}
        print(name, found[name])
    return found, predictions


def _comparable(value: object) -> object:
    """Predictions with tensors and arrays as (dtype, shape, bytes), so ``==`` compares them
    exactly (the ranks' results reach the first one pickled, in another key order)."""
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_comparable(v) for v in value]
    if isinstance(value, torch.Tensor):
        value = value.numpy()
    if isinstance(value, np.ndarray):
        return str(value.dtype), value.shape, value.tobytes()
    return value


def test_two_rank_detection_evaluation_equals_one_rank(slurm_trained, slurm, shapes, tmp_path):
    """The Slurm-trained checkpoint: the same bbox and segm AP and the same predictions from 1
    rank as from 2 through tools/dist_test.sh and tools/slurm_test.sh."""
    checkpoint = str(slurm_trained['work_dir'] / f'iter_{ITERS}.pth')
    found, predictions = _evaluate(DEMO_CONFIG, checkpoint, data_options(shapes) + OPTIONS,
                                   slurm, tmp_path, r'coco/\w+', '.pkl')
    assert {'coco/bbox_mAP', 'coco/segm_mAP'} <= set(found['one']), found['one']
    assert len(predictions['one']) == 4  # a result per image
    assert found['torchrun'] == found['one'] and found['slurm'] == found['one']
    assert predictions['torchrun'] == predictions['one'] == predictions['slurm']


def test_two_rank_segmentation_evaluation_equals_one_rank(slurm, tmp_path):
    """The segmentation demo (an untrained model: its predictions vary from pixel to pixel):
    the same mIoU, aAcc, mAcc and prediction maps from 1 rank as from 2."""
    root = tmp_path / 'shapes_ade'
    make_shapes_ade(str(root), num_train=0, num_val=4, size=(56, 72), seed=1)
    checkpoint = str(tmp_path / 'untrained.pth')
    run_tool(['tools/init_checkpoint.py', str(SEG_DEMO_CONFIG), checkpoint, '--work-dir',
              str(tmp_path / 'init')])
    found, predictions = _evaluate(
        SEG_DEMO_CONFIG, checkpoint, [f'test_dataloader.dataset.data_root={root}'], slurm,
        tmp_path, r'mIoU|aAcc|mAcc', '')
    assert {'mIoU', 'aAcc', 'mAcc'} <= set(found['one']), found['one']
    assert len(predictions['one']) == 4  # a label map per image
    assert found['torchrun'] == found['one'] and found['slurm'] == found['one']
    assert predictions['torchrun'] == predictions['one'] == predictions['slurm']
