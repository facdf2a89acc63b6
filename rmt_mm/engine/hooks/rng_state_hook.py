"""Random generator states in checkpoints, so that ``--resume`` continues with the random
numbers the uninterrupted run drew."""
import logging
import random
from typing import List, Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop

from .mid_epoch_resume_hook import MidEpochResumeHook, trained_in_epoch


def _capture_rng() -> dict:
    state = dict(torch=torch.get_rng_state(), numpy=np.random.get_state(),
                 python=random.getstate())
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict) -> None:
    torch.set_rng_state(state['torch'])
    np.random.set_state(state['numpy'])
    random.setstate(state['python'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


class _RestoreBeforeFetch:
    """Stands in for an iteration loop's data iterator while a resumed run skips the batches
    trained before the checkpoint: sets the checkpoint's generator states before every fetch,
    so that the last one, which gets the first batch to train, starts from them. mmengine 0.10.7
    skips by fetching the trained batches (each one is fetched after another restore);
    onedl-mmengine 0.10.12 calls :meth:`skip_iter`, which fetches them too with workers."""

    def __init__(self, iterator, state: dict, workers: bool) -> None:
        self.iterator = iterator
        self._state = state
        self._workers = workers

    def __iter__(self):
        return self

    def __next__(self):
        _restore_rng(self._state)
        return next(self.iterator)

    def skip_iter(self, num_iters: int) -> None:
        if self._workers:
            # Through the workers, whose generators then advance as in the uninterrupted run
            # (onedl-mmengine would skip an InfiniteSampler's indices without loading them).
            for _ in range(num_iters):
                next(self.iterator)
            return
        self.iterator.skip_iter(num_iters)
        # With a sampler that skips by itself (InfiniteSampler), onedl-mmengine drops its data
        # loader iterator and creates it at the next fetch, which draws a seed from torch's
        # generator; the uninterrupted run created it at its first iteration. Create it now,
        # before the states are set.
        ensure_iterator = getattr(self.iterator, '_ensure_iterator', None)
        if ensure_iterator is not None:
            ensure_iterator()

    def __getattr__(self, name: str):
        return getattr(self.iterator, name)


class RNGStateHook(Hook):
    """Store the random generator states in checkpoints and restore them on ``--resume``, where
    the uninterrupted run stood when it saved the checkpoint.

    mmengine restores weights, optimizer, schedulers, iteration and the sampler's seed, but not
    torch's generator, which drop path and the RPN/RoI samplers draw from, nor numpy's and
    Python's, which the data pipeline's random transforms draw from: without this hook a resumed
    run continues with different random numbers than an uninterrupted one.

    The states are set right before the resumed run fetches its first batch, after the loop has
    skipped the trained ones. There the uninterrupted run has not yet started the data loader
    iterator of a new epoch: a resume at an epoch boundary starts it after the restore, so the
    seed it draws from torch's generator is drawn in both runs. Validation runs on a side
    stream: the states are saved before it and set back after it, so a checkpoint written
    before a validation (or a best checkpoint written during one) holds the states training
    continues with. An epoch loop resumed within an epoch also needs
    :class:`MidEpochResumeHook`.

    Data loader workers have generators of their own, which mmengine seeds when they start:
    the skipped batches are loaded through them so that they advance as in the uninterrupted
    run, but persistent workers of an epoch loop carry them over epochs, which a resumed run
    cannot reproduce (it warns).

    With several processes every rank's states are saved (``rng_state_ranks``, indexed by
    rank; ``rng_state`` is the first rank's) and each rank continues with its own: ranks draw
    different amounts (different images, different numbers of proposals). mmengine calls
    ``before_save_checkpoint`` on the first rank only, inside ``Runner.save_checkpoint``, which
    every rank calls; so this hook wraps that method of its runner to gather the states of all
    ranks first.
    """

    priority = 'VERY_LOW'  # after MidEpochResumeHook has positioned the resumed epoch

    def __init__(self) -> None:
        self._pending: Optional[dict] = None  # the states a resumed run continues with
        self._training: Optional[dict] = None  # the training states while a validation runs
        self._ranks: Optional[List[dict]] = None  # every rank's states, for the next save

    def _gather_before_saving(self, runner) -> None:
        """Make ``runner.save_checkpoint`` gather every rank's states before it saves."""
        save = runner.save_checkpoint

        def gathering_save(*args, **kwargs):
            self._ranks = all_gather_object(self._training or _capture_rng())
            try:
                return save(*args, **kwargs)
            finally:
                self._ranks = None

        runner.save_checkpoint = gathering_save

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['rng_state'] = self._training or _capture_rng()
        if self._ranks is not None:
            checkpoint['rng_state_ranks'] = self._ranks

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state: Optional[dict] = checkpoint.get('rng_state')
        ranks: Optional[List[dict]] = checkpoint.get('rng_state_ranks')
        if ranks is not None and len(ranks) == get_world_size():
            state = ranks[get_rank()]
        if state is not None and runner._resume:  # `load_from` alone starts a fresh run
            self._pending = state

    def before_train(self, runner) -> None:
        if get_world_size() > 1:
            self._gather_before_saving(runner)
        loop = runner.train_loop
        if self._pending is None or not isinstance(loop, EpochBasedTrainLoop):
            return
        if trained_in_epoch(loop) and not any(
                isinstance(hook, MidEpochResumeHook) for hook in runner.hooks):
            print_log('RNGStateHook: the checkpoint was saved within an epoch, which mmengine '
                      'trains again from its first batch; add MidEpochResumeHook to continue '
                      'where it stopped', logger='current', level=logging.WARNING)
        loader = loop.dataloader
        if loop.epoch > 0 and loader.num_workers > 0 and loader.persistent_workers:
            print_log('RNGStateHook: the data loader workers are persistent, so their random '
                      'generators carry over from epoch to epoch; a resumed run starts them '
                      'afresh and its random transforms differ from the uninterrupted run\'s '
                      '(persistent_workers=False resumes exactly)', logger='current',
                      level=logging.WARNING)

    def before_train_epoch(self, runner) -> None:
        if self._pending is None:
            return
        loop = runner.train_loop
        if isinstance(loop, IterBasedTrainLoop):
            loop.dataloader_iterator = _RestoreBeforeFetch(
                loop.dataloader_iterator, self._pending, loop.dataloader.num_workers > 0)
        else:
            _restore_rng(self._pending)
            self._pending = None

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        loop = runner.train_loop
        if isinstance(getattr(loop, 'dataloader_iterator', None), _RestoreBeforeFetch):
            loop.dataloader_iterator = loop.dataloader_iterator.iterator
        self._pending = None

    def before_val(self, runner) -> None:
        self._training = _capture_rng()

    def after_val(self, runner) -> None:
        if self._training is not None:
            _restore_rng(self._training)
            self._training = None

