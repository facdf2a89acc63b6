"""Exact ``--resume`` of an epoch-based loop from a checkpoint written within an epoch, and the
world size a resumed run must keep."""
from mmengine.dist import get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop

from ...errors import CheckpointError


def trained_in_epoch(loop: EpochBasedTrainLoop) -> int:
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

    Where a run stands in its data depends on the number of processes (each rank's sampler
    takes every world-size-th sample, and an iteration is world size x batch size samples), so
    checkpoints record the world size and a resume with another one is refused, naming both.
    """

    priority = 'LOW'  # after DistSamplerSeedHook has set the sampler's epoch

    def __init__(self) -> None:
        self._skip = 0

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint.setdefault('meta', {})['world_size'] = get_world_size()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        saved = checkpoint.get('meta', {}).get('world_size')
        if runner._resume and saved is not None and saved != get_world_size():
            raise CheckpointError(
                f'{runner._load_from}: saved by {saved} processes, this run has '
                f'{get_world_size()}; resume it with {saved} processes, or start a new run '
                f'from its weights (--cfg-options load_from={runner._load_from}, no --resume)')

    def before_train(self, runner) -> None:
        loop = runner.train_loop
        self._skip = 0
        if not isinstance(loop, EpochBasedTrainLoop) or loop.iter == 0:
            return
        trained, per_epoch = trained_in_epoch(loop), len(loop.dataloader)
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

