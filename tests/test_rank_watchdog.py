"""RankWatchdog in one process: two ranks' watchdogs on a real TCP store, one of them stopped
the way a killed process stops (no more beats, no goodbye). The multi-process case, a rank
killed under torchrun, is in tests/test_cluster.py."""
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from torch.distributed import TCPStore

from rmt_mm.engine.hooks.rank_watchdog_hook import (
    PEER_LOST_EXIT_CODE,
    RankWatchdog,
    RankWatchdogHook,
    peer_lost,
)
from rmt_mm.errors import ConfigError

from helpers import REPO
from helpers.tools import free_port

INTERVAL = 0.1


#: The store's server in a process of its own, as torchrun's agent holds it.
SERVER = """import sys, time
from datetime import timedelta
from torch.distributed import TCPStore
store = TCPStore('127.0.0.1', int(sys.argv[1]), is_master=True, wait_for_workers=False,
                 timeout=timedelta(seconds=10))
print('ready', flush=True)
time.sleep(600)
"""


@pytest.fixture
def ranks():
    """Rank 0's and rank 1's watchdogs, beating, and the process serving their store."""
    port = free_port()
    server = subprocess.Popen([sys.executable, '-c', SERVER, str(port)], stdout=subprocess.PIPE,
                              text=True)
    assert server.stdout.readline() == 'ready\n'
    dogs = [RankWatchdog(TCPStore('127.0.0.1', port, is_master=False,
                                  timeout=timedelta(seconds=10)),
                         f'127.0.0.1:{port}', rank, 2, INTERVAL, timeout=60)
            for rank in (0, 1)]
    dogs[1].store.add(dogs[1]._key('beats', 1), 1)  # both counters exist before rank 0 waits
    for dog in dogs:
        dog.start()
    yield dogs, server
    for dog in dogs:
        dog._stop.set()
    server.kill()
    server.wait()


def _die(dog: RankWatchdog) -> None:
    """What SIGKILL leaves: the beats stop, nothing is said."""
    dog._stop.set()
    dog._thread.join()


def test_a_rank_that_stops_beating_is_named(ranks):
    (alive, dead), _ = ranks
    assert alive.wait_for_lost(wait=5 * INTERVAL) is None  # both beat
    _die(dead)
    line = alive.wait_for_lost(wait=10)
    assert line is not None and line.startswith('rank 1 (')
    assert f'pid {os.getpid()}' in line and 'rank 0 stops too' in line
    assert '--resume' in line


def test_a_rank_that_finished_is_not_taken_for_dead(ranks):
    (alive, done), _ = ranks
    done.stop()
    assert alive.wait_for_lost(wait=6 * 3 * INTERVAL) is None


def test_a_store_that_stops_answering_is_named(ranks):
    (first, _), server = ranks
    server.kill()
    line = first.wait_for_lost(wait=10)
    assert line is not None and 'store at 127.0.0.1:' in line and 'is gone' in line


def test_only_collective_errors_wait_for_a_verdict(ranks, monkeypatch):
    from rmt_mm.engine.hooks import rank_watchdog_hook
    (alive, dead), _ = ranks
    monkeypatch.setattr(rank_watchdog_hook, '_running', alive)
    _die(dead)
    assert peer_lost(ValueError('a bug of our own')) is None
    line = peer_lost(RuntimeError('[../third_party/gloo/gloo/transport/tcp/pair.cc:534] '
                                  'Connection closed by peer [127.0.0.1]:40123'))
    assert line is not None and line.startswith('rank 1 (')


@pytest.mark.parametrize('kwargs', [dict(interval=0), dict(interval=10, timeout=20)])
def test_bad_arguments_are_named(kwargs):
    with pytest.raises(ConfigError, match=r'^RankWatchdogHook: needs interval > 0 and timeout'):
        RankWatchdogHook(**kwargs)


#: A rank 0 whose peer (rank 1) beat once and then went silent: its watchdog alone must end it.
SURVIVOR = """import sys, time
from datetime import timedelta
from torch.distributed import TCPStore
from rmt_mm.engine.hooks.rank_watchdog_hook import RankWatchdog
port = int(sys.argv[1])
store = TCPStore('127.0.0.1', port, is_master=False, timeout=timedelta(seconds=10))
dog = RankWatchdog(store, f'127.0.0.1:{port}', 0, 2, interval=0.1, timeout=1.0)
store.add(dog._key('beats', 1), 1)
dog.start()
time.sleep(60)  # the main thread blocks, as in a collective that never returns
print('not stopped')
"""


def test_a_silent_peer_ends_a_blocked_rank_after_the_timeout(ranks):
    """The exit itself, in a process of its own: one line and status 1 once the peer has been
    silent for ``timeout``, whatever the main thread does."""
    (dog, _), _ = ranks
    port = dog.where.rsplit(':', 1)[1]
    # Another restart count: keys of their own on the fixture's store, whose ranks beat on.
    env = dict(os.environ, TORCHELASTIC_RESTART_COUNT='7')
    run = subprocess.run([sys.executable, '-c', SURVIVOR, port], capture_output=True, text=True,
                         timeout=120, cwd=str(REPO), env=env)
    lines = [line for line in run.stderr.splitlines() if line.startswith('error')]
    assert run.returncode == PEER_LOST_EXIT_CODE and 'not stopped' not in run.stdout, run.stderr
    assert len(lines) == 1 and lines[0].startswith('error: rank 1 ('), lines
    assert 'no heartbeat for 1 s' in lines[0], lines
