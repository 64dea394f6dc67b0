"""How a :func:`~.fused.simulate` call is cut: windows of steps, kernel threads, which kernel takes the runs, and
where in a window scalars are written. Plain functions of sizes (and numba's thread settings), no kernel.

Usage::

    from amsgrad_repro.synthetic.windows import auto_window, thread_count

    auto_window(runs=2, problems=1, log_every=1000)   # steps per kernel call: 4,194,304
    thread_count(2)                                   # threads for 2 independent runs: at most 2
"""

from __future__ import annotations

import numba
import numpy as np

from ..values import usable_cpus

#: the lane kernel takes the Adam-family runs when there are at least this many per thread (numba's); fewer go
#: through the single-run kernel, which is as fast or faster then (a lane block is at least 32 lanes wide).
#: Measured on the 2-core machine with ``bench --lane-runs N``, G run-steps/s lanes vs single-run: 8 runs 0.16-0.17
#: vs 0.16-0.23, 16 runs 0.25 vs 0.13, 64 runs 1.07 vs 0.17, 2,048 runs 1.78 vs 0.17
LANES_PER_THREAD = 8
#: the automatic window (``window=None``): about this many run-steps per kernel call, so that a call lasts some
#: 10-100 ms, within these bounds in steps. Each call is a parallel region whose threads must all be scheduled
#: before it ends: on a machine whose cores are taken by other work, every call waits for a time slice, so a
#: paper-length run in 2^16-step windows (153 calls) took 2.4-2.9 s beside two busy processes against 1.5 s
#: quiet; in a few large windows it waits a few times (issue 27)
WINDOW_RUN_STEPS = 1 << 24
WINDOW_MIN, WINDOW_MAX = 1 << 16, 1 << 22
#: and at most this many slopes c_t in memory per window (8 bytes each, one row per problem), and this many
#: snapshots per run per window
WINDOW_COEFS = 1 << 22
WINDOW_POINTS = 1 << 16


def auto_window(runs: int, problems: int, log_every: int) -> int:
    """Steps per kernel call when ``simulate`` is not told: :data:`WINDOW_RUN_STEPS` run-steps, within
    [:data:`WINDOW_MIN`, :data:`WINDOW_MAX`] steps, at most :data:`WINDOW_COEFS` slopes and :data:`WINDOW_POINTS`
    snapshots a run (never below one step). The window changes no number (tests/test_fused.py)."""
    window = min(max(WINDOW_RUN_STEPS // max(runs, 1), WINDOW_MIN), WINDOW_MAX)
    return max(1, min(window, WINDOW_COEFS // max(problems, 1), WINDOW_POINTS * log_every))


def thread_count(units: int, threads: int | None = None) -> int:
    """Threads for a kernel call with ``units`` independent pieces of work (runs of the single-run kernel, blocks
    of the lane kernel): ``threads`` if given (within numba's limit, ``NUMBA_NUM_THREADS``), else the CPUs this
    process may use (a taskset's, a container's) within numba's current setting, and never more than there are
    pieces: one run is sequential, and a thread with nothing to do still has to be scheduled at every call."""
    limit = numba.config.NUMBA_NUM_THREADS
    # unasked, also within what the caller set (a Ray task that asked for one CPU sets one thread)
    wanted = min(usable_cpus(), numba.get_num_threads()) if threads is None else min(threads, limit)
    return max(1, min(wanted, units))


def lanes_take(n: int) -> bool:
    """Whether ``n`` Adam-family runs with constant β's go to the lane kernel by default."""
    return n >= LANES_PER_THREAD * numba.get_num_threads()


def log_points(t0: int, n: int, log_every: int, last_t: int) -> np.ndarray:
    """The steps t in [t0, t0 + n) where scalars are written: multiples of ``log_every``, and ``last_t``."""
    first = -(-t0 // log_every) * log_every
    ts = np.arange(first, min(t0 + n, last_t + 1), log_every, dtype=np.int64)
    if t0 <= last_t < t0 + n and (len(ts) == 0 or ts[-1] != last_t):
        ts = np.append(ts, last_t)
    return ts
