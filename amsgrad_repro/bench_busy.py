"""bench's timings of whole processes and of work beside busy ones (issue 27): a paper-length ``online`` against
``import torch``, and the lane kernel in this process against the same runs split over one-thread processes (as
``--ray`` or a process pool would run them), each quiet and beside two busy processes.

Usage (what ``python -m amsgrad_repro bench --busy`` does)::

    from amsgrad_repro.bench_busy import busy_processes, time_lanes_split, time_startup

    online, gamma, torch_ = time_startup(3)                 # medians of 3, quiet
    with busy_processes(2):                                  # two spinning processes beside whatever runs here
        online_busy, _, torch_busy = time_startup(3)
        split = time_lanes_split("online", 2048, 1_000_000, parts=2)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .values import usable_cpus

if TYPE_CHECKING:
    from .synthetic.fused import FusedRun


def time_startup(repeats: int) -> tuple[float, float, float]:
    """(median wall seconds of ``python -m amsgrad_repro online`` at its defaults, the same with ``--gamma``, median
    of ``python -c "import torch"``), each a fresh process, alternated ``repeats`` times, after one untimed online
    run of each (the kernel cache)."""

    def wall(args: list[str], cwd: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, check=True)
        return time.perf_counter() - start

    online, gamma, torch_ = [], [], []
    with tempfile.TemporaryDirectory() as logdir:
        cmd = ["-m", "amsgrad_repro", "online", "--logdir", logdir, "--no-progress"]
        wall([*cmd, "--run-name", "warm"], logdir)
        wall([*cmd, "--run-name", "warm-gamma", "--gamma"], logdir)
        for k in range(repeats):
            online.append(wall([*cmd, "--run-name", f"r{k}"], logdir))
            gamma.append(wall([*cmd, "--run-name", f"g{k}", "--gamma"], logdir))
            torch_.append(wall(["-c", "import torch"], logdir))
    return statistics.median(online), statistics.median(gamma), statistics.median(torch_)


@contextlib.contextmanager
def busy_processes(n: int):
    """``n`` processes spinning on a core each (as ``python3 -c "while True: pass"``), killed when the block ends,
    however it ends: the load a shared machine or a CI runner puts beside a run. Each also stops by itself when
    its parent is gone (killed outright, where no ``finally`` runs), so none outlives bench."""
    spin = "import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n    pass"
    procs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(n)]
    try:
        time.sleep(1.0)  # let them take their cores
        yield procs
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


def lane_runs(n: int) -> list[FusedRun]:
    """The lane measurement's runs: Adam and AMSGrad alternating, 97 step sizes (a phase grid's kind of work)."""
    from .synthetic.fused import FusedRun  # here, not at the top: the CLI's --help needs no kernel

    return [FusedRun.of("adam" if i % 2 else "amsgrad", lr=1e-3 * (1 + i % 97)) for i in range(n)]


#: what each one-thread process of :func:`time_lanes_split` runs: its share of the runs, after loading the kernel
_SPLIT_CHILD = """
import json, sys, time
from amsgrad_repro.bench_busy import lane_runs
from amsgrad_repro.synthetic.config import ProblemConfig
from amsgrad_repro.synthetic.fused import simulate
setting, n, steps, part, parts = sys.argv[1], *map(int, sys.argv[2:6])
runs = lane_runs(n)[part::parts]
problem = ProblemConfig(setting).functions()
simulate([problem], runs[:8], 10, simd=True)  # the kernel's load, not timed (a Ray worker pays it once too)
start = time.perf_counter()
simulate([problem], runs, steps, log_every=1000, on_log=lambda *a: None, simd=True)
print(json.dumps(time.perf_counter() - start))
"""


def time_lanes_split(setting: str, n: int, steps: int, parts: int) -> float:
    """Seconds the :func:`lane_runs` of ``n`` runs × ``steps`` take split over ``parts`` processes of one numba
    thread each, started together (the slowest process's kernel time; the kernel's load is not counted, as it is
    not for the in-process timing)."""
    env = {**os.environ, "NUMBA_NUM_THREADS": "1"}
    args = [setting, str(n), str(steps)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _SPLIT_CHILD, *args, str(k), str(parts)], stdout=subprocess.PIPE, env=env, text=True
        )
        for k in range(parts)
    ]
    try:
        return max(json.loads(proc.communicate()[0]) for proc in procs)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def busy_timings(args: argparse.Namespace, online_s: float, torch_s: float, lanes_s: float,
                 time_lanes: Callable[[], float]) -> dict:  # fmt: skip
    """``bench --busy``: the paper-length ``online`` and ``import torch`` again beside two busy processes, then the
    lane measurement (``time_lanes()`` in this process, ``lanes_s`` its quiet time) against the same runs split
    over one-thread processes, quiet and busy; prints the ratios."""
    parts = max(1, usable_cpus())
    split_s = time_lanes_split(args.setting, args.lane_runs, args.lane_steps, parts)
    with busy_processes(2):
        online_busy, _, torch_busy = time_startup(args.startup_repeats)
        lanes_busy = time_lanes()
        split_busy = time_lanes_split(args.setting, args.lane_runs, args.lane_steps, parts)
    print(
        f"beside two busy processes: online {online_busy:.2f} s (busy / quiet {online_busy / online_s:.2f}, "
        f"target ≤ 1.5), import torch {torch_busy:.2f} s (busy / quiet {torch_busy / torch_s:.2f}); "
        f"ratio online / import torch, busy: {online_busy / torch_busy:.2f}"
    )
    print(
        f"{args.lane_runs} lane runs × {args.lane_steps:,} steps, in this process against split over {parts} "
        f"one-thread processes (as --ray runs a phase grid): quiet {lanes_s:.2f} s against {split_s:.2f} s "
        f"(ratio {lanes_s / split_s:.2f}), busy {lanes_busy:.2f} s against {split_busy:.2f} s (ratio "
        f"{lanes_busy / split_busy:.2f}; target ≤ 1); busy / quiet in this process {lanes_busy / lanes_s:.2f}"
    )
    return {
        "online_busy_wall_s": online_busy,
        "import_torch_busy_wall_s": torch_busy,
        "lanes_split_s": split_s,
        "lanes_busy_s": lanes_busy,
        "lanes_split_busy_s": split_busy,
    }
