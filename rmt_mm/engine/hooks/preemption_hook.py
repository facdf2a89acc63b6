"""Preemption that loses nothing: on a scheduler's signal every rank finishes the iteration it is
in, one resumable checkpoint is written, and the processes exit with a status that asks for a
restart (docs/cluster.md)."""
import logging
import os.path as osp
import signal
from types import FrameType
from typing import Dict, Optional, Sequence, Union

import torch
from mmengine.dist import all_reduce, barrier, get_world_size, is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log

from ...checkpoints.atomic import atomic_open
from ...errors import ConfigError

#: EX_TEMPFAIL of sysexits.h: "try again later", the exit status of a preempted run.
REQUEUE_EXIT_CODE = 75


def _signal_number(name: Union[str, int]) -> signal.Signals:
    try:
        return signal.Signals(name) if isinstance(name, int) else signal.Signals[
            name if name.startswith('SIG') else f'SIG{name}']
    except (KeyError, ValueError):
        raise ConfigError(f'PreemptionHook.signals: unknown signal {name!r} (e.g. SIGTERM, '
                          'SIGUSR1)') from None


class PreemptionHook(Hook):
    """Turn a preemption notice into a checkpoint instead of lost work.

    Slurm (``scontrol requeue``, ``scancel --signal``, ``--signal=USR1@60`` before the time
    limit), Kubernetes and spot instances send a signal some seconds before they take the node
    back. The signal only marks the run: after every training iteration the ranks combine their
    marks (one ``max`` all-reduce of a single number), so they all stop after the same iteration
    even if the signal reached them at different moments. Then one checkpoint
    ``iter_<N>.pth`` is written (atomically, with the ``last_checkpoint`` pointer) after the
    iteration in progress, the ranks wait for it, and every process exits with ``exit_code``.
    ``--resume`` without a path continues from it; with :class:`RNGStateHook` and
    :class:`MidEpochResumeHook` the run ends bit-identical to an uninterrupted one. Further
    signals while the run finishes its iteration or saves are ignored, so they cannot tear the
    checkpoint.

    Args:
        signals: Names (or numbers) of the signals that preempt.
        exit_code: Exit status of every process after the save; 75 (``EX_TEMPFAIL``) by
            default, which a requeueing job script tests for.
    """

    priority = 'LOWEST'  # after this iteration's logging and interval checkpoint

    def __init__(self, signals: Sequence[Union[str, int]] = ('SIGTERM', 'SIGUSR1'),
                 exit_code: int = REQUEUE_EXIT_CODE) -> None:
        self.signals = [_signal_number(name) for name in signals]
        if not isinstance(exit_code, int) or not 0 < exit_code < 256:
            raise ConfigError(f'PreemptionHook.exit_code: must be in 1..255, got {exit_code!r}')
        self.exit_code = exit_code
        self._received: Optional[signal.Signals] = None
        self._received_in = 0  # the iteration (1-based) in progress when it came
        # The iteration in progress, from the ranks' agreement on the one before to theirs on it.
        self._iter = 0
        self._previous: Dict[signal.Signals, object] = {}

    def _on_signal(self, signum: int, frame: Optional[FrameType]) -> None:
        if self._received is None:
            self._received, self._received_in = signal.Signals(signum), self._iter

    def before_train(self, runner) -> None:
        self._iter = runner.iter + 1
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def _restore_handlers(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def after_run(self, runner) -> None:
        self._restore_handlers()

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        flag = torch.tensor([0 if self._received is None else int(self._received)])
        all_reduce(flag, op='max')  # one rank's signal stops them all, after this iteration
        if not flag.item():
            self._iter = runner.iter + 2  # a signal from now on stops the next iteration
            return
        done = runner.iter + 1
        heard = (f'{self._received.name} arrived in iteration {self._received_in}'
                 if self._received is not None else 'another rank was signalled')
        filename = f'iter_{done}.pth'
        print_log(f'preemption: {heard}; all {get_world_size()} ranks stop after iteration '
                  f'{done} and save {filename}', logger='current', level=logging.WARNING)
        runner.save_checkpoint(runner.work_dir, filename, by_epoch=False,
                               backend_args=dict(backend='atomic_local'))
        if is_main_process():
            with atomic_open(osp.join(runner.work_dir, 'last_checkpoint')) as f:
                f.write(osp.join(runner.work_dir, filename).encode('utf-8'))
        barrier()  # no rank exits (which a launcher answers by killing the rest) before the save
        print_log(f'preemption: saved {osp.join(runner.work_dir, filename)}; exit '
                  f'{self.exit_code}, continue with --resume', logger='current',
                  level=logging.WARNING)
        self._restore_handlers()
        raise SystemExit(self.exit_code)
