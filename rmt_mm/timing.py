"""Timing and memory of steps measured side by side in one process.

Interleaving makes machine load affect every step alike, so ratios stay meaningful on a shared
machine where absolute times drift.
"""
import statistics
import time
from typing import Callable, Dict, NamedTuple


class Timing(NamedTuple):
    """Medians over the repeats: wall seconds, and this process's CPU seconds (the steadier
    measure with one thread on a shared machine: time spent waiting for a core is not in it)."""
    wall_s: float
    cpu_s: float


def time_interleaved(steps: Dict[str, Callable[[], None]], warmup: int,
                     repeats: int) -> Dict[str, Timing]:
    """Run each of ``steps`` ``warmup`` times, then ``repeats`` rounds of one call each in
    turn; the median :class:`Timing` per step (NaN with no repeats)."""
    for _ in range(warmup):
        for fn in steps.values():
            fn()
    samples = {name: [] for name in steps}
    for _ in range(repeats):
        for name, fn in steps.items():
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            samples[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    nan = float('nan')
    return {name: Timing(statistics.median(s[0] for s in runs) if runs else nan,
                         statistics.median(s[1] for s in runs) if runs else nan)
            for name, runs in samples.items()}


def rss_mb(field: str = 'VmHWM') -> float:
    """``VmRSS`` or ``VmHWM`` (the high-water mark; unlike ``ru_maxrss`` not inherited from
    the parent at fork) of this process in MiB (Linux)."""
    with open('/proc/self/status') as f:
        line = next(ln for ln in f if ln.startswith(field + ':'))
    return int(line.split()[1]) / 1024
