"""Training state survives a crash at any moment: atomic checkpoint and pointer writes, a kill
in the middle of writing, a truncated newest checkpoint and an empty pointer all resume to the
uninterrupted run's weights; a resume file cannot change process-wide logging statistics."""
import copy
import io
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer

from rmt_mm.checkpoints import hooks
from rmt_mm.checkpoints.atomic import atomic_open, atomic_save
from rmt_mm.checkpoints.reading import safe_load
from rmt_mm.errors import CheckpointError

from helpers.toy_runner import Interrupt, InterruptAfter, make_runner

TOY = os.path.join(os.path.dirname(__file__), 'helpers', 'toy_runner.py')
ATOMIC = dict(checkpoint_type='AtomicCheckpointHook', interval=2)


def _assert_same_weights(state, reference):
    differing = [k for k in reference if not torch.equal(state[k], reference[k])]
    assert not differing, f'{len(differing)} tensors differ, e.g. {differing[:3]}'


def _resume(work_dir, **kwargs):
    runner = make_runner(work_dir, resume=True, hooks=[dict(type='RNGStateHook')], **ATOMIC,
                         **kwargs)
    runner.train()
    return runner


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    """The uninterrupted run: 6 iterations, checkpoints every 2."""
    runner = make_runner(tmp_path_factory.mktemp('full'), hooks=[dict(type='RNGStateHook')],
                         **ATOMIC)
    runner.train()
    return copy.deepcopy(runner.model.state_dict())


def _last_log(work_dir):
    return sorted(work_dir.glob('*/*.log'))[-1].read_text()


def _interrupted(work_dir, after=4, **kwargs):
    with pytest.raises(Interrupt):
        make_runner(work_dir, hooks=[dict(type='RNGStateHook'), InterruptAfter(after)], **ATOMIC,
                    **kwargs).train()


# ---------------------------------------------------------------------------- atomic writes
def test_atomic_open_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / 'ckpt.pth'
    atomic_save({'a': torch.ones(2)}, str(target))
    with pytest.raises(RuntimeError), atomic_open(str(target)) as f:
        f.write(b'half a checkpoint')
        raise RuntimeError('killed')
    assert torch.equal(safe_load(str(target))['a'], torch.ones(2))
    assert os.listdir(tmp_path) == ['ckpt.pth']  # no temporary file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_oldest_checkpoint_deleted_only_after_pointer(tmp_path, monkeypatch):
    """With max_keep_ckpts=1, a crash while the pointer is written keeps the old checkpoint
    (mmengine deletes it before saving the new one)."""
    real_open = hooks.atomic_open
    writes = []

    def failing_pointer(path):
        writes.append(path)
        if len(writes) == 2:
            raise OSError('disk full')
        return real_open(path)

    monkeypatch.setattr(hooks, 'atomic_open', failing_pointer)
    with pytest.raises(OSError):
        make_runner(tmp_path, max_keep_ckpts=1, **ATOMIC).train()
    assert (tmp_path / 'iter_2.pth').is_file() and (tmp_path / 'iter_4.pth').is_file()
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'iter_2.pth')


# ---------------------------------------------------------------------------- torn state
@pytest.mark.slow
def test_kill_while_writing_a_checkpoint(reference, tmp_path):
    """SIGKILL halfway through writing iter_4.pth: no torn file appears, the pointer still
    names iter_2.pth, and auto-resume finishes with the uninterrupted run's weights."""
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()), PYTHONWARNINGS='ignore')
    proc = subprocess.run([sys.executable, TOY, str(tmp_path), '--die-at-save', '2'], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert not (tmp_path / 'iter_4.pth').exists()
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'iter_2.pth')
    assert any(name.endswith('.tmp') for name in os.listdir(tmp_path))  # the half-written one
    _assert_same_weights(_resume(tmp_path).model.state_dict(), reference)


@pytest.mark.slow
def test_torn_checkpoint_of_a_killed_plain_run_is_skipped(reference, tmp_path, caplog):
    """mmengine's own CheckpointHook killed mid-write leaves a torn iter_4.pth: auto-resume
    names it, skips it and resumes from iter_2.pth."""
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()), PYTHONWARNINGS='ignore')
    proc = subprocess.run([sys.executable, TOY, str(tmp_path), '--plain', '--die-at-save', '2'],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert (tmp_path / 'iter_4.pth').stat().st_size < (tmp_path / 'iter_2.pth').stat().st_size
    runner = _resume(tmp_path)
    log = _last_log(tmp_path)
    assert f'auto-resume: skipped {tmp_path}/iter_4.pth: corrupt or truncated' in log
    assert f'auto-resume: resuming from {tmp_path}/iter_2.pth' in log
    _assert_same_weights(runner.model.state_dict(), reference)


def test_truncated_newest_checkpoint_falls_back(reference, tmp_path):
    _interrupted(tmp_path)
    data = (tmp_path / 'iter_4.pth').read_bytes()
    (tmp_path / 'iter_4.pth').write_bytes(data[:len(data) // 3])
    runner = _resume(tmp_path)
    assert runner.iter == 6
    log = _last_log(tmp_path)
    assert f'skipped {tmp_path}/iter_4.pth: corrupt or truncated' in log
    _assert_same_weights(runner.model.state_dict(), reference)


def test_empty_pointer_falls_back_to_newest_file(reference, tmp_path):
    _interrupted(tmp_path)
    (tmp_path / 'last_checkpoint').write_text('')
    runner = _resume(tmp_path)
    log = _last_log(tmp_path)
    assert 'last_checkpoint is empty' in log
    assert f'auto-resume: resuming from {tmp_path}/iter_4.pth' in log
    _assert_same_weights(runner.model.state_dict(), reference)


def test_no_readable_checkpoint_stops_with_one_line(tmp_path):
    _interrupted(tmp_path)
    for name in ('iter_2.pth', 'iter_4.pth'):
        (tmp_path / name).write_bytes(b'')
    with pytest.raises(CheckpointError) as info:
        _resume(tmp_path)
    assert str(info.value) == (f'auto-resume: no readable checkpoint in {tmp_path} (2 tried; '
                               f'newest: {tmp_path}/iter_4.pth: empty file (0 bytes))')


def test_explicit_resume_of_a_broken_file_names_it(tmp_path):
    _interrupted(tmp_path, after=2)
    (tmp_path / 'iter_2.pth').write_bytes(b'<!DOCTYPE html>')
    runner = make_runner(tmp_path, resume=True, **ATOMIC)
    runner._load_from = str(tmp_path / 'iter_2.pth')
    with pytest.raises(CheckpointError, match=rf'^{tmp_path}/iter_2.pth: an HTML page'):
        runner.train()


def test_nothing_to_resume_starts_from_scratch(tmp_path):
    runner = make_runner(tmp_path, resume=True, hooks=[InterruptAfter(1)], **ATOMIC)
    with pytest.raises(Interrupt):
        runner.train()
    assert not runner._resume and runner.iter == 0  # no resume attempted; iteration 1 ran


def test_epoch_resume_restores_the_pipeline_rng(tmp_path_factory):
    """An epoch loop does not replay the data pipeline, so numpy's generator (random
    augmentation) must come back from the checkpoint for the resumed run to match."""
    kwargs = dict(max_iters=2, by_epoch=True, augment=True, interval=1,
                  checkpoint_type='AtomicCheckpointHook', hooks=[dict(type='RNGStateHook')])
    full = make_runner(tmp_path_factory.mktemp('full'), **kwargs)
    full.train()
    work = tmp_path_factory.mktemp('part')
    with pytest.raises(Interrupt):
        make_runner(work, **{**kwargs, 'hooks': kwargs['hooks'] + [InterruptAfter(1, True)]}
                    ).train()
    assert (work / 'epoch_1.pth').is_file()
    np.random.seed(123)  # whatever the process did in between
    resumed = make_runner(work, resume=True, **kwargs)
    resumed.train()
    _assert_same_weights(resumed.model.state_dict(), full.model.state_dict())


# ---------------------------------------------------------------------------- HistoryBuffer
def _saved_buffer(state):
    """A checkpoint holding a HistoryBuffer whose pickled state is ``state``."""
    buffer = HistoryBuffer()
    original = HistoryBuffer.__getstate__
    HistoryBuffer.__getstate__ = lambda self: state
    try:
        stream = io.BytesIO()
        torch.save({'hb': buffer}, stream)
    finally:
        HistoryBuffer.__getstate__ = original
    stream.seek(0)
    return stream


def test_history_buffer_state_cannot_change_statistics_methods(tmp_path):
    fields = dict(HistoryBuffer([1.0, 3.0], [1, 1]).__dict__)
    registry = dict(HistoryBuffer._statistics_methods)
    # Known names with foreign values (plain data is all the allow-list lets through): ignored.
    path = tmp_path / 'hb.pth'
    path.write_bytes(_saved_buffer({**fields, 'statistics_methods': {'mean': 'evil'}}).getvalue())
    loaded = safe_load(str(path))['hb']
    assert HistoryBuffer._statistics_methods == registry and loaded.mean() == 2.0
    for state, refused in (({**fields, 'statistics_methods': {'steal': 'x'}}, "['steal']"),
                           ({**fields, '_statistics_methods': {}}, "'_statistics_methods'")):
        path = tmp_path / 'hb.pth'
        path.write_bytes(_saved_buffer(state).getvalue())
        with pytest.raises(CheckpointError, match=rf'refused as unsafe: .*{refused}'):
            safe_load(str(path))
    assert HistoryBuffer._statistics_methods == registry
