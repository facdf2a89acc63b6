"""``--resume`` continues exactly as the uninterrupted run, from any checkpoint: within an epoch
and at its end, in iteration- and epoch-based loops, with ``RNGStateHook`` for a run that draws
random numbers and without it for one that draws none. Also: checkpoints reload under torch's
weights-only unpickler, and the demo config resumes exactly at an epoch boundary through
tools/train.py."""
import shutil
import types
import zipfile

import pytest
import torch

from rmt_mm.checkpoints.reading import safe_load
from rmt_mm.engine.hooks import RNGStateHook
from rmt_mm.errors import CheckpointError

from helpers.det import DEMO_CONFIG, data_options
from helpers.toy_runner import make_runner

RNG = dict(type='RNGStateHook')
MID_EPOCH = dict(type='MidEpochResumeHook')  # tools/train.py adds it to every config
#: Epoch checkpoints beside the iteration ones, so that one run writes both kinds.
EPOCH_CHECKPOINTS = dict(type='CheckpointHook', interval=1, by_epoch=True)

#: Eight images in batches of 2 make epochs of 4 iterations; checkpoints every 2 iterations:
#: iter_2 within the first epoch, iter_4 at its end, as is epoch_1. Validation right after
#: iter_4 (epoch_1) is part of the uninterrupted run but not of the resumed one.
LOOPS = dict(
    iter=(dict(max_iters=6, interval=2, val_interval=4), ('iter_2', 'iter_4')),
    epoch=(dict(max_iters=2, by_epoch=True, checkpoint_by_epoch=False, interval=2,
                val_interval=1), ('iter_2', 'iter_4', 'epoch_1')))
#: How a run draws random numbers: drop path, a random batch scale and random augmentation
#: draw from torch's, Python's and numpy's generators, in data loader workers' own with
#: workers; 'plain' draws none (shuffling aside, which mmengine's sampler derives from its seed
#: and epoch). onedl-mmengine skips an InfiniteSampler's trained batches in the sampler.
RUNS = dict(random=(dict(stochastic=True, augment=True), [RNG]),
            infinite=(dict(stochastic=True, augment=True, sampler='InfiniteSampler'), [RNG]),
            infinite_workers=(dict(stochastic=True, augment=True, sampler='InfiniteSampler',
                                   num_workers=2), [RNG]),
            plain=(dict(), []))
CASES = [(loop, run, ckpt) for loop, (_, ckpts) in LOOPS.items() for run in RUNS
         for ckpt in ckpts if not (loop == 'epoch' and run.startswith('infinite'))]


@pytest.fixture(scope='module', autouse=True)
def _no_restart_pause():
    """mmengine pauses 2 s whenever an iteration loop restarts its data loader (against a
    deadlock of worker processes, which the toy runs do not have)."""
    import mmengine.runner.loops as loops
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(loops, 'time', types.SimpleNamespace(sleep=lambda seconds: None))
        yield


def _runner(work_dir, loop, run, **kwargs):
    loop_args, _ = LOOPS[loop]
    run_args, hooks = RUNS[run]
    extra = [EPOCH_CHECKPOINTS] if loop == 'epoch' else []
    kwargs.setdefault('hooks', hooks + extra + [MID_EPOCH])
    return make_runner(work_dir, **loop_args, **run_args, **kwargs)


def _state(runner):
    """Everything training changes: weights and optimizer state, copied."""
    return dict(weights={k: v.clone() for k, v in runner.model.state_dict().items()},
                optimizer={(i, k): torch.as_tensor(v).clone()
                           for i, s in runner.optim_wrapper.state_dict()['state'].items()
                           for k, v in s.items()})


def _assert_identical(state, reference):
    for part, tensors in reference.items():
        differing = [k for k, v in tensors.items() if not torch.equal(state[part][k], v)]
        worst = max(((state[part][k] - tensors[k]).abs().max().item() for k in differing),
                    default=0.0)
        assert not differing, (f'{len(differing)}/{len(tensors)} {part} tensors differ '
                               f'(max abs {worst:.3g}), e.g. {differing[:2]}')


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
    """(work dir with its checkpoints, final state) of the uninterrupted run, per loop and run."""
    done = {}

    def get(loop, run):
        if (loop, run) not in done:
            work_dir = tmp_path_factory.mktemp(f'{loop}-{run}')
            runner = _runner(work_dir, loop, run)
            runner.train()
            done[loop, run] = work_dir, _state(runner), runner.iter
        return done[loop, run]

    return get


def _resume(work_dir, source, loop, run, **kwargs):
    shutil.copy(source, work_dir)
    runner = _runner(work_dir, loop, run, resume=True, load_from=str(work_dir / source.name),
                     **kwargs)
    runner.train()
    return runner


@pytest.mark.parametrize('loop,run,checkpoint', CASES, ids=['-'.join(c) for c in CASES])
def test_resume_from_any_checkpoint_matches_the_uninterrupted_run(uninterrupted, tmp_path,
                                                                   loop, run, checkpoint):
    full_dir, reference, iterations = uninterrupted(loop, run)
    resumed = _resume(tmp_path, full_dir / f'{checkpoint}.pth', loop, run)
    assert resumed.iter == iterations
    _assert_identical(_state(resumed), reference)


def test_epoch_loop_without_mid_epoch_hook_trains_the_epoch_again(uninterrupted, tmp_path):
    """mmengine's own behaviour, which MidEpochResumeHook corrects: the resumed epoch starts
    from its first batch, and the run trains 2 iterations more than configured."""
    full_dir, _, iterations = uninterrupted('epoch', 'random')
    resumed = _resume(tmp_path, full_dir / 'iter_2.pth', 'epoch', 'random',
                      hooks=[RNG, EPOCH_CHECKPOINTS])
    assert resumed.iter == iterations + 2
    log = next(tmp_path.glob('*/*.log')).read_text()
    assert 'RNGStateHook: the checkpoint was saved within an epoch' in log


def test_persistent_workers_of_an_epoch_loop_are_named(uninterrupted, tmp_path):
    """Their generators carry over epochs in the uninterrupted run; a resumed run starts them
    afresh (the only case here that stays inexact, see docs/checkpoints.md)."""
    workers = dict(num_workers=2, persistent_workers=True)
    reference = _runner(tmp_path / 'full', 'epoch', 'random', **workers)
    reference.train()
    resumed = _resume(tmp_path, tmp_path / 'full' / 'epoch_1.pth', 'epoch', 'random', **workers)
    with pytest.raises(AssertionError, match='weights tensors differ'):
        _assert_identical(_state(resumed), _state(reference))
    log = next(tmp_path.glob('2*/*.log')).read_text()
    assert 'RNGStateHook: the data loader workers are persistent' in log


def test_mid_epoch_checkpoint_of_other_epochs_is_refused(uninterrupted, tmp_path):
    full_dir, _, _ = uninterrupted('epoch', 'random')
    with pytest.raises(CheckpointError, match=r'iter_4.pth: saved at iteration 4 in epoch 1, '
                       r'which does not fit epochs of 2 batches \(the data set or the batch '
                       r'size changed since\)$'):
        _resume(tmp_path, full_dir / 'iter_4.pth', 'epoch', 'random', batch_size=4)


def test_checkpoint_during_validation_holds_the_training_states():
    """A best checkpoint is written while validation runs; training continues from the states
    before the validation."""
    hook = RNGStateHook()
    training = torch.get_rng_state()
    hook.before_val(None)
    torch.rand(5)  # validation draws
    checkpoint = {}
    hook.before_save_checkpoint(None, checkpoint)
    hook.after_val(None)
    assert torch.equal(checkpoint['rng_state']['torch'], training)
    assert torch.equal(torch.get_rng_state(), training)


def test_checkpoint_is_plain_data_for_weights_only(uninterrupted):
    full_dir, _, _ = uninterrupted('iter', 'random')
    ckpt_path = full_dir / 'iter_2.pth'
    with zipfile.ZipFile(ckpt_path) as archive:
        pickled = archive.read(next(n for n in archive.namelist() if n.endswith('data.pkl')))
    assert b'getattr' not in pickled
    ckpt = safe_load(str(ckpt_path))
    assert ckpt['meta']['iter'] == 2
    assert set(ckpt['rng_state']) >= {'torch', 'numpy', 'python'}
    assert ckpt['message_hub']['log_scalars']['train/loss'].mean() > 0


def test_demo_config_resumes_exactly_within_an_epoch(tmp_path):
    """tools/train.py on the demo config (Mask R-CNN: RoI sampling, random flips), 4 images in
    batches of 2, 3 iterations; resumed from iter_1, within the first epoch (the toy runner's
    cases above resume at epoch ends too)."""
    from rmt_mm.datasets.shapes import make_shapes_coco

    from helpers.tools import call_tool
    make_shapes_coco(str(tmp_path / 'shapes'), num_train=4, num_val=1, seed=5,
                     size_range=(64, 80))
    options = ['--cfg-options', *data_options(str(tmp_path / 'shapes'), img_scale=64),
               'train_cfg.max_iters=3', 'train_cfg.val_interval=1000',
               'model.train_cfg.rpn_proposal.max_per_img=50',
               'default_hooks.checkpoint.interval=1', 'default_hooks.checkpoint.max_keep_ckpts=3']

    def train(work_dir, *args):
        run = call_tool('train', DEMO_CONFIG, '--work-dir', work_dir, *args, *options)
        assert run.returncode == 0, run.stderr[-3000:]
        return safe_load(str(work_dir / 'iter_3.pth'))['state_dict']

    reference = dict(weights=train(tmp_path / 'full'))
    work_dir = tmp_path / 'resumed'
    work_dir.mkdir()
    shutil.copy(tmp_path / 'full' / 'iter_1.pth', work_dir)
    resumed = train(work_dir, '--resume', work_dir / 'iter_1.pth')
    _assert_identical(dict(weights=resumed), reference)
