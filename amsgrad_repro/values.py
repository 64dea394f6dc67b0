"""Command-line values every command reads the same way: counts, step-size ranges, seed ranges.

Usage::

    from amsgrad_repro.values import count, lr_values, seed_values
    count("1e7"), count("10_000_000")      # 10000000, 10000000
    lr_values("1e-4:1e-1:4")               # [0.0001, 0.001, 0.01, 0.1]
    seed_values("0:4")                     # [0, 1, 2, 3]

Each raises ``argparse.ArgumentTypeError`` with the text that was wrong, so argparse reports it on one line. They
live here, below every command (with :func:`usable_cpus`, which both wings' thread and job counts read), so that the
synthetic and the real-data commands share them, with :func:`add_output_flags`, the output flags every command that
writes runs takes, and :func:`add_dtype_flag`.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Sequence


def usable_cpus() -> int:
    """The CPUs this process may use (a container's, a taskset's), at least 1."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def count(text: str) -> int:
    """An integer that may be written ``10_000_000`` or ``1e7``."""
    try:
        return _bounded(int(text.replace("_", "")), text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not value.is_integer():
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}")
    return _bounded(int(value), text)


#: the largest count any flag takes: the engines count steps in int64, with headroom for t + window
MAX_COUNT = 2**62
#: the most values one range flag (``--lr A:B:N``, ``--seed A:B``) expands to; checked before anything is built
MAX_RANGE = 1_000_000


def _bounded(value: int, text: str) -> int:
    if abs(value) > MAX_COUNT:
        raise argparse.ArgumentTypeError(f"{text!r} is too large (at most 2^62 = {MAX_COUNT:.3g})")
    return value


def lr_values(text: str) -> list[float]:
    """``1e-3`` → [0.001]; ``1e-4:1e-1:4`` → 4 log-spaced values from 1e-4 to 1e-1 inclusive."""
    try:
        if ":" not in text:
            return [float(text)]
        start, stop, n_text = text.split(":")
        lo, hi, n = float(start), float(stop), int(n_text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a step size or START:STOP:N range: {text!r}") from None
    if n < 1 or not (0 < lo < math.inf and 0 < hi < math.inf):
        raise argparse.ArgumentTypeError(f"a range START:STOP:N needs finite START, STOP > 0 and N >= 1: {text!r}")
    if n > MAX_RANGE:
        raise argparse.ArgumentTypeError(f"{n:,} step sizes in one range is too many (at most {MAX_RANGE:,})")
    if n == 1:
        return [lo]
    return [float(f"{lo * (hi / lo) ** (k / (n - 1)):.6g}") for k in range(n)]


def seed_values(text: str) -> list[int]:
    """``3`` → [3]; ``0:5`` → [0, 1, 2, 3, 4] (START inclusive, STOP exclusive, like Python's range).
    An empty range (``5:2``) is an error, not zero runs."""
    if ":" not in text:
        return [count(text)]
    start, _, stop = text.partition(":")
    lo, hi = count(start), count(stop)
    if hi <= lo:
        raise argparse.ArgumentTypeError(f"empty seed range {text!r}: START:STOP needs START < STOP")
    if hi - lo > MAX_RANGE:  # counted, not built
        raise argparse.ArgumentTypeError(f"{hi - lo:,} seeds in one range is too many (at most {MAX_RANGE:,})")
    return list(range(lo, hi))


def distinct_names(values: Sequence[float | None]) -> dict[float | None, str]:
    """Each swept value's name in a run's path (``lr=0.001``): ``:g``'s 6 significant digits, what a user reads,
    unless two values print the same at that precision (``--lr 0.0010000001 0.0010000002``); then as many digits
    as tell every pair apart (at most 17, which tells any two floats apart). Names are unique by construction
    for distinct values; repeated values are refused where the flags are read."""
    for digits in range(6, 18):
        names = {v: f"{v:.{digits}g}" for v in values if v is not None}
        if len(set(names.values())) == len(names):
            return names
    return {v: repr(v) for v in values if v is not None}


def add_dtype_flag(g: argparse._ActionsContainer) -> None:
    """``--dtype``: the precision of x and of the optimizers' state, in the fused kernel and the Trial alike."""
    g.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        default="float32",
        help="precision of x and of every optimizer state: float32 (torch's default, as in the paper's "
        "frameworks) or float64 (to see what rounding changes)",
    )


#: what ``--allow-large`` lets through, in the commands that plan runs (phase plans cells: it says its own)
LARGE_RUNS = "go on when the invocation plans more than 10,000 runs or about 1 GB of TensorBoard events"


def bar_disable(progress: bool | None) -> bool | None:
    """tqdm's ``disable`` for ``--progress`` (True), ``--no-progress`` (False) or neither (None: tqdm shows the bar
    on a terminal only)."""
    return None if progress is None else not progress


def add_output_flags(g: argparse._ActionsContainer, large: str = LARGE_RUNS) -> None:
    """``--overwrite``, ``--allow-large`` (help: ``large``) and ``--progress``/``--no-progress``: the same in every
    command that writes runs (which add the spine's ``--ray`` and ``--ray-timeout`` after them with
    :func:`amsgrad_repro.cluster.add_ray_flags`; this module, on the ground floor, imports nothing of the
    package)."""
    g.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing run directory of the same name (only once the new run has something to keep)",
    )
    g.add_argument(
        "--allow-large",
        action="store_true",
        help=large,
    )
    g.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a progress bar on stderr even when it is not a terminal (a log file), or none (default: a bar on a "
        "terminal only)",
    )
