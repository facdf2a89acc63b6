"""PreemptionHook in one process: a signal within an epoch or in the last iteration of one, in
iteration- and epoch-based loops, stops training after that iteration with one checkpoint and
exit status 75, and ``--resume`` (auto) from it ends bit-identical to the uninterrupted run. A
second signal during the save changes nothing; a resume with another world size is refused.
The same under torchrun and Slurm, with several processes: tests/test_cluster.py."""
import errno
import os
import signal

import pytest
from mmengine.hooks import Hook
from test_resume import _assert_identical, _state

from rmt_mm.checkpoints.reading import safe_load
from rmt_mm.engine.hooks import PreemptionHook
from rmt_mm.errors import CheckpointError, ConfigError

from helpers.toy_runner import make_runner

HOOKS = [dict(type='RNGStateHook'), dict(type='MidEpochResumeHook'),
         dict(type='PreemptionHook')]
#: Epochs of 4 iterations (8 images, batches of 2); interval checkpoints only at the end, so
#: the preemption checkpoint is the only one to resume from.
LOOPS = dict(iter=dict(max_iters=8, interval=8),
             epoch=dict(max_iters=2, by_epoch=True, checkpoint_by_epoch=True, interval=2))
#: The iteration (1-based) the signal arrives in: within the first epoch, or its last one.
WHEN = dict(mid_epoch=2, epoch_end=4)
CASES = [(loop, when) for loop in LOOPS for when in WHEN]


class SignalIn(Hook):
    """Sends ``sig`` to this process while iteration ``n`` (1-based) runs."""
    priority = 'HIGHEST'

    def __init__(self, n: int, sig: int = signal.SIGTERM) -> None:
        self.n, self.sig = n, sig

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter + 1 == self.n:
            os.kill(os.getpid(), self.sig)


def _runner(work_dir, loop, hooks=(), **kwargs):
    args = dict(LOOPS[loop], **kwargs)
    return make_runner(work_dir, hooks=HOOKS + list(hooks), stochastic=True, augment=True,
                       checkpoint_type='AtomicCheckpointHook', **args)


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
    done = {}

    def get(loop):
        if loop not in done:
            runner = _runner(tmp_path_factory.mktemp(f'full-{loop}'), loop)
            runner.train()
            done[loop] = _state(runner)
        return done[loop]

    return get


def _preempt(work_dir, loop, hook) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _runner(work_dir, loop, hooks=[hook]).train()
    assert exit_info.value.code == 75


@pytest.mark.parametrize('loop,when', CASES, ids=['-'.join(c) for c in CASES])
def test_signal_saves_after_the_iteration_and_resume_is_exact(uninterrupted, tmp_path, loop,
                                                              when):
    n = WHEN[when]
    _preempt(tmp_path, loop, SignalIn(n))
    saved = sorted(p.name for p in tmp_path.glob('*.pth'))
    assert saved == [f'iter_{n}.pth'], saved  # nothing lost: the signalled iteration is in it
    assert (tmp_path / 'last_checkpoint').read_text().endswith(f'iter_{n}.pth')
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers put back
    resumed = _runner(tmp_path, loop, resume=True)
    resumed.train()
    _assert_identical(_state(resumed), uninterrupted(loop))


def test_early_warning_signal_is_configurable(tmp_path):
    hook = dict(type='PreemptionHook', signals=['USR2'], exit_code=99)
    runner = make_runner(tmp_path, max_iters=6, interval=6,
                         hooks=[hook, SignalIn(1, signal.SIGUSR2)])
    with pytest.raises(SystemExit) as exit_info:
        runner.train()
    assert exit_info.value.code == 99
    assert safe_load(str(tmp_path / 'iter_1.pth'))['meta']['iter'] == 1


def test_second_signal_during_the_save_does_not_tear_it(uninterrupted, tmp_path, monkeypatch):
    from rmt_mm.checkpoints.mmengine_io import AtomicLocalBackend
    original = AtomicLocalBackend.put

    def put(self, obj, filepath):
        os.kill(os.getpid(), signal.SIGTERM)  # the scheduler insists, mid-save
        original(self, obj[:len(obj) // 2], str(filepath) + '.half')  # time passes
        os.kill(os.getpid(), signal.SIGTERM)
        original(self, obj, filepath)

    monkeypatch.setattr(AtomicLocalBackend, 'put', put)
    _preempt(tmp_path, 'iter', SignalIn(3))
    monkeypatch.undo()
    safe_load(str(tmp_path / 'iter_3.pth'))  # complete
    resumed = _runner(tmp_path, 'iter', resume=True)
    resumed.train()
    _assert_identical(_state(resumed), uninterrupted('iter'))


def test_resume_with_another_world_size_is_refused(tmp_path, monkeypatch):
    _preempt(tmp_path, 'iter', SignalIn(2))
    import rmt_mm.engine.hooks.mid_epoch_resume_hook as module
    monkeypatch.setattr(module, 'get_world_size', lambda: 4)
    with pytest.raises(CheckpointError) as err:
        _runner(tmp_path, 'iter', resume=True).train()
    message = str(err.value)
    assert '\n' not in message
    for part in ('iter_2.pth', 'saved by 1 processes', 'this run has 4',
                 'resume it with 1 processes', 'load_from='):
        assert part in message, message


@pytest.mark.parametrize('kwargs,part', [(dict(signals=['SIGNOPE']), "'SIGNOPE'"),
                                         (dict(exit_code=0), 'exit_code')])
def test_bad_arguments_are_named(kwargs, part):
    with pytest.raises(ConfigError, match=part):
        PreemptionHook(**kwargs)


class DiskFullAfter(Hook):
    """From the end of iteration ``n`` on, writing a file's data fails as on a full disk."""
    priority = 'LOWEST'

    def __init__(self, n: int, monkeypatch) -> None:
        self.n, self.monkeypatch = n, monkeypatch

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.n:
            def full(fd):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.monkeypatch.setattr(os, 'fsync', full)


def test_full_disk_during_a_save_is_one_line_and_keeps_the_previous_checkpoint(
        uninterrupted, tmp_path, monkeypatch):
    runner = _runner(tmp_path, 'iter', hooks=[DiskFullAfter(4, monkeypatch)], interval=4)
    with pytest.raises(CheckpointError) as err:
        runner.train()
    monkeypatch.undo()
    assert str(err.value) == (f'{tmp_path / "iter_8.pth"}: cannot write it (No space left on '
                              'device); the previous file is kept')
    assert [p.name for p in tmp_path.glob('*.pth')] == ['iter_4.pth']
    assert not list(tmp_path.glob('.*.tmp'))  # no temporary file left
    resumed = _runner(tmp_path, 'iter', resume=True, interval=4)
    resumed.train()
    _assert_identical(_state(resumed), uninterrupted('iter'))
