"""Training hooks shared by detection and segmentation runs: exact ``--resume`` (RNG state, and
the batch an epoch loop stopped at), strict checkpoint loading, and crash-safe checkpoints with an
auto-resume that skips damaged ones.

:func:`rmt_mm.plugin.install` registers them in mmengine's root ``HOOKS``. The configs switch
them on through ``default_hooks`` (``strict_load`` and ``checkpoint``), so mmdet's and mmseg's
own tools get them too; ``tools/train.py`` and ``tools/test.py`` add them (and
``mid_epoch_resume``) to configs that lack them (:func:`rmt_mm.cli.add_safety_hooks`).
"""
import logging
import os
import os.path as osp
import random
import re
from typing import List, Optional, Sequence

import numpy as np
import torch
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop

from ..errors import CheckpointError
from .atomic import atomic_open
from .model import fit_checkpoint
from .reading import safe_load


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
    cannot reproduce (it warns). Only the first rank's states are saved (see
    docs/checkpoints.md).
    """

    priority = 'VERY_LOW'  # after MidEpochResumeHook has positioned the resumed epoch

    def __init__(self) -> None:
        self._pending: Optional[dict] = None  # the states a resumed run continues with
        self._training: Optional[dict] = None  # the training states while a validation runs

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['rng_state'] = self._training or _capture_rng()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state: Optional[dict] = checkpoint.get('rng_state')
        if state is not None and runner._resume:  # `load_from` alone starts a fresh run
            self._pending = state

    def before_train(self, runner) -> None:
        loop = runner.train_loop
        if self._pending is None or not isinstance(loop, EpochBasedTrainLoop):
            return
        if _trained_in_epoch(loop) and not any(
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


def _trained_in_epoch(loop: EpochBasedTrainLoop) -> int:
    """How many batches of its current epoch an epoch loop has trained."""
    return loop.iter - loop.epoch * len(loop.dataloader)


class _PositionedLoader:
    """Stands in for an epoch loop's data loader until the resumed epoch starts: hands the loop
    an iterator already past the trained batches, and puts the loader back."""

    def __init__(self, loop, iterator) -> None:
        self._loop, self._loader, self._iterator = loop, loop.dataloader, iterator

    def __iter__(self):
        self._loop.dataloader = self._loader
        return self._iterator

    def __len__(self) -> int:
        return len(self._loader)

    def __getattr__(self, name: str):
        return getattr(self._loader, name)


class MidEpochResumeHook(Hook):
    """Resume an epoch-based loop from a checkpoint saved within an epoch (an iteration
    checkpoint, ``CheckpointHook(by_epoch=False)``) at the batch after the last one trained.

    mmengine's ``EpochBasedTrainLoop`` trains the resumed epoch from its first batch again: the
    batches before the checkpoint are trained twice and the run ends past its last iteration.
    Here the epoch's data loader iterator is advanced past them before the epoch starts, the
    way onedl-mmengine's iteration loop skips: through the batch sampler alone without workers,
    by loading and dropping the batches with workers (whose generators then advance as in the
    uninterrupted run). Iteration-based loops skip trained batches themselves. The resumed
    epoch's ``batch_idx`` (and the log's batch count) starts from 0.
    """

    priority = 'LOW'  # after DistSamplerSeedHook has set the sampler's epoch

    def __init__(self) -> None:
        self._skip = 0

    def before_train(self, runner) -> None:
        loop = runner.train_loop
        self._skip = 0
        if not isinstance(loop, EpochBasedTrainLoop) or loop.iter == 0:
            return
        trained, per_epoch = _trained_in_epoch(loop), len(loop.dataloader)
        if not 0 <= trained <= per_epoch:
            raise CheckpointError(
                f'{runner._load_from}: saved at iteration {loop.iter} in epoch {loop.epoch + 1}, '
                f'which does not fit epochs of {per_epoch} batches (the data set or the batch '
                'size changed since)')
        self._skip = trained

    def before_train_epoch(self, runner) -> None:
        if not self._skip:
            return
        loop, skip, self._skip = runner.train_loop, self._skip, 0
        print_log(f'Skip the {skip} batches of epoch {loop.epoch + 1} trained before the '
                  'checkpoint', logger='current')
        iterator = iter(loop.dataloader)
        single_process = loop.dataloader.num_workers == 0 and hasattr(iterator, '_next_index')
        for _ in range(skip):
            if single_process:
                iterator._next_index()  # the batch's indices only, without loading it
            else:
                next(iterator)
        loop.dataloader = _PositionedLoader(loop, iterator)


class StrictLoadHook(Hook):
    """Refuse, before any compute, a checkpoint the runner loads (``load_from``, ``--resume``,
    ``tools/test.py CKPT``) whose weights do not fit the built model, which mmengine would load
    in part with only a warning (see :mod:`rmt_mm.checkpoints.model`).

    Args:
        allow_partial: Key prefixes (module names such as ``'roi_head.bbox_head.fc_cls'``) that
            may be missing from the checkpoint, differ in shape or be extra, e.g. a head with
            another class count. Those keys keep their initial values, and the run logs them.
            Applies to ``load_from`` only: a resumed run must get back its whole state.
        allow_nonfinite: Load weights holding NaN or Inf (refused by default).
    """

    priority = 'VERY_HIGH'  # before other hooks read the checkpoint

    def __init__(self, allow_partial: Sequence[str] = (), allow_nonfinite: bool = False) -> None:
        self.allow_partial = tuple(allow_partial)
        self.allow_nonfinite = allow_nonfinite

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        name = runner._load_from or 'checkpoint'
        partial = () if runner._resume else self.allow_partial
        try:
            fit_checkpoint(runner.model, checkpoint, name, partial, self.allow_nonfinite)
        except CheckpointError as err:
            if runner._resume and self.allow_partial:
                raise CheckpointError(f'{err} (allow_partial applies to load_from, not to a '
                                      'resumed run)') from None
            raise


#: File names mmengine's CheckpointHook gives checkpoints by default.
_CHECKPOINT_NAME = re.compile(r'^(?:epoch|iter)_(\d+)\.pth$')


def resume_candidates(work_dir: str) -> List[str]:
    """Checkpoints to resume from, newest first: the files named like mmengine's checkpoints in
    the directory ``last_checkpoint`` points into (else ``work_dir``), and the pointer's own
    target if it is named otherwise."""
    pointer = osp.join(work_dir, 'last_checkpoint')
    named = ''
    if osp.isfile(pointer):
        with open(pointer, encoding='utf-8', errors='replace') as f:
            named = f.read().strip()
        if not named:
            print_log(f'auto-resume: {pointer} is empty', logger='current',
                      level=logging.WARNING)
    directory = osp.dirname(named) if named and osp.isdir(osp.dirname(named)) else work_dir
    found = []
    for filename in os.listdir(directory) if osp.isdir(directory) else []:
        match = _CHECKPOINT_NAME.match(filename)
        if match:
            found.append((int(match.group(1)), osp.join(directory, filename)))
    candidates = [path for _, path in sorted(found, reverse=True)]
    if named and named not in candidates:
        candidates.insert(0, named)
    return candidates


def find_resumable_checkpoint(work_dir: str) -> Optional[str]:
    """The newest checkpoint of ``work_dir`` that reads completely, naming in the log each newer
    one it skipped; ``None`` if there is none at all; :class:`CheckpointError` if all fail."""
    failures = []
    for path in resume_candidates(work_dir):
        try:
            safe_load(path)
        except CheckpointError as err:
            failures.append(str(err))
            print_log(f'auto-resume: skipped {err}', logger='current', level=logging.WARNING)
            continue
        return path
    if failures:
        raise CheckpointError(f'auto-resume: no readable checkpoint in {work_dir} '
                              f'({len(failures)} tried; newest: {failures[0]})')
    return None


class AtomicCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` made crash-safe: a kill at any moment leaves a checkpoint to
    resume from.

    - Checkpoints (regular and best) and the ``last_checkpoint`` pointer are written atomically
      (temporary file, fsync, rename, directory fsync), so no file is ever torn.
    - The oldest checkpoint beyond ``max_keep_ckpts`` is deleted only after the new one and the
      pointer are on disk (mmengine deletes it first, so a crash in between left nothing).
    - Auto-resume (``resume=True`` without ``load_from``) starts from the newest checkpoint that
      reads, skipping (and naming) damaged ones, also when the pointer is missing or empty.

    Takes mmengine's arguments; remote ``out_dir``/``backend_args`` keep mmengine's writes.
    """

    def before_run(self, runner) -> None:
        if not runner._resume or runner._load_from is not None:
            return
        found = find_resumable_checkpoint(runner.work_dir)
        if found is None:
            print_log(f'auto-resume: no checkpoint in {runner.work_dir}; training starts from '
                      'the beginning', logger='current')
            runner._resume = False
        else:
            print_log(f'auto-resume: resuming from {found}', logger='current')
            runner._load_from = found

    def before_train(self, runner) -> None:
        local = '://' not in str(self.out_dir or runner.work_dir)
        if local and self.backend_args is None and self.file_client_args is None:
            self.backend_args = dict(backend='atomic_local')
        super().before_train(runner)

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        stale = None
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids
                                            and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                stale = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))

        filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(self.out_dir, filename, self.file_client_args,
                               save_optimizer=self.save_optimizer,
                               save_param_scheduler=self.save_param_scheduler, meta=meta,
                               by_epoch=self.by_epoch, backend_args=self.backend_args,
                               **self.args)
        if not is_main_process():
            return
        with atomic_open(osp.join(runner.work_dir, 'last_checkpoint')) as f:
            f.write(self.last_ckpt.encode('utf-8'))
        if stale is not None:
            path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(stale))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):  # checkpoints saved by deepspeed
                self.file_backend.rmtree(path)
