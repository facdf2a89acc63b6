"""A rank that dies (SIGKILL, the OOM killer, a lost node) stops the others within a bound and
is named, instead of leaving them blocked in a collective until its timeout (30 min)."""
import os
import socket
import sys
import threading
import time
from datetime import timedelta
from typing import Dict, List, Optional

from mmengine.dist import get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log
from torch.distributed import TCPStore

from ...errors import ConfigError

#: Exit status of a rank stopped because another one is gone.
PEER_LOST_EXIT_CODE = 1

#: Heartbeats a peer may miss before a failed collective is blamed on it (the hook's
#: timeout must be at least as long).
_MISSED_BEATS = 3

_running: Optional['RankWatchdog'] = None


class RankWatchdog:
    """Heartbeats of every rank through the launcher's TCP store, watched from a thread.

    Each rank adds one to its own counter every ``interval`` seconds and reads everybody's; a
    peer whose counter has not moved for ``timeout`` seconds is gone (a live process beats from
    its thread whatever its main thread does). A store that stops answering for as long means
    the process hosting it is gone: torchrun's agent on the first node, or rank 0 under Slurm
    (which also ends a finished run's store, so a finishing rank stops watching first).
    """

    def __init__(self, store: TCPStore, where: str, rank: int, world_size: int,
                 interval: float, timeout: float) -> None:
        self.store, self.where = store, where
        self.rank, self.world_size = rank, world_size
        self.interval, self.timeout = interval, timeout
        attempt = os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')
        self._prefix = f'rmt_mm/watchdog/{attempt}'
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._silent: Dict[int, float] = {}  # seconds since each peer's counter last moved
        self._store_silent = 0.0  # seconds since the store last answered
        self._thread = threading.Thread(target=self._watch, name='rank-watchdog', daemon=True)

    def _key(self, kind: str, rank: int) -> str:
        return f'{self._prefix}/{kind}/{rank}'

    def start(self) -> None:
        self.store.set(self._key('who', self.rank), f'{socket.gethostname()}, pid {os.getpid()}')
        self.store.add(self._key('beats', self.rank), 1)
        self.store.wait([self._key('beats', r) for r in range(self.world_size)],
                        timedelta(seconds=self.timeout))
        self._thread.start()

    def stop(self) -> None:
        """This rank is done: peers stop watching it, it stops watching them."""
        self._stop.set()
        self._thread.join()
        try:
            self.store.set(self._key('beats', self.rank), 'done')
        except Exception:  # the store's host finished first
            pass

    def _beat(self) -> List[bytes]:
        self.store.add(self._key('beats', self.rank), 1)
        return [self.store.get(self._key('beats', r)) for r in range(self.world_size)]

    def _watch(self) -> None:
        peers = [r for r in range(self.world_size) if r != self.rank]
        start = time.monotonic()
        moved = {r: (b'', start) for r in peers}
        answered = start
        while not self._stop.wait(self.interval):
            try:
                beats = self._beat()
            except Exception:  # the store's connection: RuntimeError or DistStoreError
                beats = None
            now = time.monotonic()
            with self._lock:
                if beats is not None:
                    answered = now
                    for r in peers:
                        if beats[r] != moved[r][0]:
                            moved[r] = (beats[r], now)
                    self._silent = {r: now - moved[r][1] for r in peers if beats[r] != b'done'}
                self._store_silent = now - answered
            line = self.lost(self.timeout)
            if line is not None:
                print(f'error: {line}', file=sys.stderr, flush=True)
                os._exit(PEER_LOST_EXIT_CODE)

    def lost(self, after: float) -> Optional[str]:
        """One line naming what has been silent for ``after`` seconds: the store, or the peer
        silent longest; None while everything answers."""
        with self._lock:
            store_silent, silent = self._store_silent, dict(self._silent)
        if store_silent >= after:
            return (f'the launcher\'s store at {self.where} has not answered for '
                    f'{store_silent:.0f} s: the process hosting it (torchrun\'s agent on the '
                    f'first node, or rank 0 under Slurm) is gone; rank {self.rank} stops too')
        gone = [r for r, s in silent.items() if s >= after]
        if not gone:
            return None
        rank = max(gone, key=silent.get)
        key = self._key('who', rank)
        try:  # get alone would wait the store's whole timeout for a key never set
            self.store.wait([key], timedelta(seconds=1))
            who = self.store.get(key).decode()
        except Exception:
            who = 'host unknown'
        return (f'rank {rank} ({who}) is gone: no heartbeat for {silent[rank]:.0f} s; rank '
                f'{self.rank} stops too (continue with --resume from the last checkpoint)')

    def wait_for_lost(self, wait: float) -> Optional[str]:
        """:meth:`lost` after ``_MISSED_BEATS`` missed beats, waiting up to ``wait`` s for it
        (a collective fails as soon as a peer's process dies, before its beats are missed)."""
        deadline = time.monotonic() + wait
        while self._thread.is_alive():
            line = self.lost(_MISSED_BEATS * self.interval)
            if line is not None or time.monotonic() >= deadline:
                return line
            time.sleep(self.interval / 2)
        return None


def peer_lost(err: BaseException) -> Optional[str]:
    """For an error raised by a collective while a watchdog runs: one line naming the rank
    that is gone, or None (no watchdog, not a collective's error, or every peer is alive)."""
    watchdog = _running
    if watchdog is None or not _is_collective_error(err):
        return None
    return watchdog.wait_for_lost(wait=watchdog.timeout)


def _is_collective_error(err: BaseException) -> bool:
    if type(err).__name__ in ('DistError', 'DistBackendError', 'DistNetworkError',
                              'DistStoreError'):
        return True
    message = str(err)
    return isinstance(err, RuntimeError) and any(
        mark in message for mark in ('gloo', 'Connection closed by peer', 'Connection reset',
                                     'NCCL', 'Broken pipe'))


class RankWatchdogHook(Hook):
    """Stop every rank within ``timeout`` seconds of one dying, with one line naming it.

    Without it, a rank killed mid-step (SIGKILL, the OOM killer, a lost node) leaves the others
    in their next collective: gloo fails at once with a traceback that names a socket, not the
    rank; NCCL waits for its timeout; a node whose peer vanished without closing its sockets
    waits for the process group's (30 min by default). With it, every rank beats through the
    launcher's TCP store (``MASTER_ADDR``/``MASTER_PORT``; one small write and read per rank
    per ``interval``), a rank whose peer misses beats for ``timeout`` seconds prints
    ``error: rank N (host, pid) is gone ...`` and exits with status 1, and a collective that
    fails because a peer died is reported the same way by the tools. Checkpoints are written
    atomically, so the next ``--resume`` starts from the last complete one.

    Args:
        interval: Seconds between heartbeats.
        timeout: Seconds of silence after which a peer is gone. A live rank beats from a
            thread whatever its main thread does, but a C extension that holds the GIL for
            longer (some COCO evaluators on huge result sets) would be taken for dead.
    """

    priority = 'VERY_HIGH'

    def __init__(self, interval: float = 2.0, timeout: float = 60.0) -> None:
        if not interval > 0 or not timeout >= _MISSED_BEATS * interval:
            raise ConfigError(f'RankWatchdogHook: needs interval > 0 and timeout >= '
                              f'{_MISSED_BEATS} x interval, got interval={interval!r}, '
                              f'timeout={timeout!r}')
        self.interval, self.timeout = float(interval), float(timeout)
        self._watchdog: Optional[RankWatchdog] = None

    def before_run(self, runner) -> None:
        global _running
        if get_world_size() < 2 or _running is not None:
            return
        host, port = os.environ.get('MASTER_ADDR'), os.environ.get('MASTER_PORT')
        if not host or not port:
            print_log('RankWatchdogHook: MASTER_ADDR/MASTER_PORT are not set (the process '
                      'group was not started from the environment); no watchdog',
                      logger='current')
            return
        store = TCPStore(host, int(port), is_master=False,
                         timeout=timedelta(seconds=self.timeout))
        self._watchdog = RankWatchdog(store, f'{host}:{port}', get_rank(), get_world_size(),
                                      self.interval, self.timeout)
        self._watchdog.start()
        _running = self._watchdog

    def after_run(self, runner) -> None:
        global _running
        if self._watchdog is not None:
            self._watchdog.stop()
            _running = self._watchdog = None
