"""The checkpoint-file hooks of detection and segmentation runs: strict checkpoint loading, and
crash-safe checkpoints with an auto-resume that skips damaged ones (the training-loop hooks live
in :mod:`rmt_mm.engine.hooks`).

:func:`rmt_mm.plugin.install` registers them in mmengine's root ``HOOKS``. The configs switch
them on through ``default_hooks`` (``strict_load`` and ``checkpoint``), so mmdet's and mmseg's
own tools get them too; ``tools/train.py`` and ``tools/test.py`` add them (and
``mid_epoch_resume``) to configs that lack them (:func:`rmt_mm.cli.add_safety_hooks`).
"""
import logging
import os
import os.path as osp
import re
from typing import List, Optional, Sequence

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log

from ..errors import CheckpointError
from .atomic import atomic_open
from .model import fit_checkpoint
from .reading import safe_load


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
