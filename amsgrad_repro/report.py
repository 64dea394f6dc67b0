"""What an invocation tells the user: the size it plans, durations, the end table, and the lines after it.

Usage::

    from amsgrad_repro.report import check_volume, mean_std, print_ending, table

    print("  writing", check_volume(runs=2, scalars=40_000, allow_large=False))   # or UsageError past the limits
    print(table([("run", "final x"), ("adam", "+1.000000")]))
    print(mean_std([0.1, 0.2, 0.3], 4))                                          # 0.2000 ± 0.1000

Part of the run spine: every command of both wings prints through it, so their headers, tables and endings
read alike. It knows nothing of either wing.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from .runs import UsageError

#: bytes one TensorBoard scalar costs on disk (an events.py record: measured 48 B at 10 M steps, rounded up)
BYTES_PER_SCALAR = 50
#: bytes a run costs on disk whatever it logs: its directory and two event files (scalars, HParams session), a
#: 4 KiB file-system block each (measured: 200,000 ten-step runs took 2.5 GB, 12.5 KB a run)
BYTES_PER_RUN = 12_288
#: past these an invocation is probably a typo, and needs ``--allow-large`` to go on
MAX_RUNS = 10_000
MAX_EVENT_BYTES = 10**9
#: the most runs even with ``--allow-large``: a planned run costs ~6.5 KB of memory at the end (its ledger row,
#: summary and session; measured: 200,000 runs, 1.43 GB peak RSS against 0.16 GB for 2) and 12 KB of disk, so
#: 200,000 runs is ~1.4 GB and ~2.5 GB (1,000,000, the old ceiling, ran out of memory on a smaller machine)
MAX_LARGE_RUNS = 200_000


def check_runs(runs: int, allow_large: bool) -> None:
    """Refuse, before any run is planned, an invocation of more than :data:`MAX_RUNS` runs (counted from the
    flags: optimizers × step sizes × β2s × seeds) unless ``allow_large``, and of more than :data:`MAX_LARGE_RUNS`
    even then."""
    if runs > MAX_RUNS and not allow_large:
        raise UsageError(f"this invocation plans {runs:,} runs: if that is what you want, pass --allow-large")
    if runs > MAX_LARGE_RUNS:
        raise UsageError(
            f"this invocation plans {runs:,} runs, more than {MAX_LARGE_RUNS:,} even with --allow-large (about "
            f"{runs * 6.5e3 / 1e9:,.1f} GB of memory and {runs * BYTES_PER_RUN / 1e9:,.1f} GB of disk)"
        )


def check_volume(runs: int, scalars: int, allow_large: bool) -> str:
    """Refuse an invocation that is probably a typo: more than :data:`MAX_RUNS` runs or more than
    :data:`MAX_EVENT_BYTES` of TensorBoard events, unless ``allow_large``. Raises :class:`UsageError`; returns
    the estimate as text for the run's header (``"about 2.0 MB of events (40,000 scalars)"``)."""
    size = scalars * BYTES_PER_SCALAR + runs * BYTES_PER_RUN
    estimate = f"about {fmt_bytes(size)} of events ({scalars:,} scalars)"
    if allow_large or (runs <= MAX_RUNS and size <= MAX_EVENT_BYTES):
        return estimate
    raise UsageError(
        f"this invocation plans {runs:,} runs and {estimate.replace('of events', 'of TensorBoard events')}: "
        "if that is what you want, pass --allow-large"
    )


#: the longest message printed on the one error line (a typo can make a flag's value megabytes long)
MAX_LINE = 300


def one_line(message: str, prefix: str = "", suffix: str = "") -> str:
    """``prefix + message + suffix`` on one screen line of at most :data:`MAX_LINE` characters: newlines become
    spaces, and the message is cut (with "…") so that the whole line fits, prefix and suffix included."""
    text = " ".join(message.split())
    room = max(MAX_LINE - len(prefix) - len(suffix), 1)
    if len(text) > room:
        text = text[: room - 1] + "…"
    return f"{prefix}{text}{suffix}"


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def fmt_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def table(rows: list[tuple[str, ...]]) -> str:
    """Left-aligned columns, a rule under the header row."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def mean_std(values: list[float | None], digits: int, sign: str = "", kind: str = "f") -> str:
    """``m ± s`` over the finite values (``m`` alone for one), ``n/a`` for none. ``kind`` is the format type:
    ``f`` for ``digits`` decimals, ``g`` for ``digits`` significant digits."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return "n/a"
    if len(finite) == 1:
        return f"{finite[0]:{sign}.{digits}{kind}}"
    return f"{statistics.fmean(finite):{sign}.{digits}{kind}} ± {statistics.stdev(finite):.{digits}{kind}}"


def print_ending(summary: dict, run_dir: Path, kept: bool, where: str, logdir: str, out) -> None:
    """The lines after the end table: nothing kept, interrupted (``where``, counts), or done; then how to view."""
    if not kept and summary.get("error"):
        print(f"stopped by a write error: nothing kept in {run_dir}", file=out)
    elif not kept:
        print("stopped before anything was done: nothing kept", file=out)
    elif summary.get("error"):
        counts = ", ".join(f"{n} {s}" for s, n in summary["runs_by_status"].items())
        print(f"stopped by a write error{where} ({counts}); partial results in {run_dir / 'summary.json'}", file=out)
    elif summary["interrupted"]:
        counts = ", ".join(f"{n} {s}" for s, n in summary["runs_by_status"].items())
        print(f"interrupted{where} ({counts}); partial results in {run_dir / 'summary.json'}", file=out)
    else:
        print(f"done in {fmt_duration(summary['elapsed_seconds'])}; summary: {run_dir / 'summary.json'}", file=out)
    print(f"view: tensorboard --logdir {logdir}", file=out)
