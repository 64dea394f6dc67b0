"""``python -m amsgrad_repro phase``: where in (β1, β2) does Adam fail on a given problem?

Usage::

    python -m amsgrad_repro phase                                  # Adam, online paper problem, 50 × 50, 1 M steps
    python -m amsgrad_repro phase --setting stochastic --optimizers adam amsgrad
    python -m amsgrad_repro phase --preset theorem1 --beta1 0 0.9 10 --beta2 0.05 0.999 40 --lr 1e-2

The paper's counterexamples fix (β1, β2) first and then pick a problem; Zhang et al. (2022) point out that for a
*fixed* problem Adam converges once β2 is large enough. This command runs a grid of (β1, β2) on one problem,
every cell a fused-engine run, and writes for each optimizer a heat map of the final x and of R_T/T, with the
curve β1 = √β2 (Theorems 2-4 assume β1 < √β2, below it) and the paper's (0.9, 0.99) marked. With ``--gamma``, a
third map beside them: the fraction of steps where Γ_t < 0 (the effective step size grew; docs/gamma.md), so the
cells where Adam fails can be compared with the cells where its step size keeps growing. With ``--verdict``, every
cell is judged by ``verdict``'s rule (:mod:`.rule`: its time-averaged iterate at T/2 and T, from ~400 logged
points) and the maps draw the verdict's boundary around the cells that ``fail``; with ``--preset theorem1``
Theorem 1's cell (β1 = 0, β2 = 1/(1+C²)) is marked. The maps are drawn by :mod:`.phase_map`.

β1 is spaced evenly on [LO, HI]; β2 is spaced evenly in log(1 − β2), so 0.9, 0.99, 0.999 are equally far
apart. Output, in ``<logdir>/phase/<setting>/<run-name>/``: ``phase.csv`` (one row per cell), ``phase.json``
(the configuration and timing) and ``phase_<optimizer>.png`` (and ``.svg``). Ctrl-C keeps the cells finished so
far; the cells it cut part-way are "interrupted" in phase.csv with the step they reached and their x there (not
drawn in the maps), and the others are "not started". Outputs follow docs/runs.md's rules.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import sys
import time
from pathlib import Path

import numpy as np

from .. import __version__
from ..cluster import Cluster, add_ray_flags, connect
from ..files import atomic_file
from ..optimizers import parse_spec, resolve
from ..report import one_line
from ..runs import RunDir, UsageError, WriteFailed, write_summary, writing
from ..signals import defer_signals, exit_code
from ..values import add_dtype_flag, add_output_flags, bar_disable, count
from .config import ProblemConfig
from .functions import PRESETS
from .grid import Grid, beta1_grid, beta2_grid, run_grid
from .phase_map import heat_map_figure, map_names
from .rule import VERDICTS

#: cells per invocation past which ``--allow-large`` is needed (and 100 × that is refused even then)
MAX_CELLS = 1_000_000
#: the most cells even with --allow-large: a cell costs ~300 bytes at its peak (measured: 10⁶ cells, 424 MB peak
#: RSS, its outputs included), so 10⁷ is ~3 GB, and 10⁸ (the old ceiling) would not fit a 24 GiB machine
MAX_LARGE_CELLS = 10 * MAX_CELLS
#: bytes a cell costs at the peak (what the refusal says a grid would need)
BYTES_PER_CELL = 300
#: cells per map above which only a PNG is drawn (an SVG of millions of cells is gigabytes and takes minutes)
MAX_SVG_CELLS = 40_000


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--setting", choices=["online", "stochastic"], default="online", help="which problem")
    p.add_argument("--preset", choices=list(PRESETS), default="paper", help="member of the counterexample family")
    p.add_argument("--C", dest="c", type=float, default=None, help="the theorems' C (presets theorem1-3)")
    p.add_argument("--delta", type=float, default=None, help="Theorem 3's δ (preset theorem3)")
    p.add_argument("--seed", type=count, default=0, help="stochastic stream seed")
    p.add_argument(
        "--optimizers", nargs="+", default=["adam"], metavar="SPEC", help="fused optimizers with β's (one map each)"
    )
    p.add_argument("--steps", type=count, default=1_000_000, help="steps T per cell")
    add_dtype_flag(p)
    p.add_argument("--lr", type=float, default=None, help="step size for every optimizer (default: 0.001)")
    p.add_argument("--eps", type=float, default=None, help="ε (default: each optimizer's own)")
    p.add_argument(
        "--beta1", type=float, nargs=3, default=[0.0, 0.99, 50], metavar=("LO", "HI", "N"), help="β1 grid (linear)"
    )
    p.add_argument(
        "--beta2", type=float, nargs=3, default=[0.5, 0.9999, 50], metavar=("LO", "HI", "N"), help="β2 grid (log 1−β2)"
    )
    p.add_argument(
        "--gamma",
        action="store_true",
        help="a third map: the fraction of steps with Γ_t < 0, where the effective step size grew (docs/gamma.md)",
    )
    p.add_argument(
        "--verdict",
        action="store_true",
        help="judge every cell by verdict's rule and draw its boundary on the maps (docs/verdict.md)",
    )
    p.add_argument("--logdir", default="logs", help="output goes to LOGDIR/phase/SETTING/RUN_NAME")
    p.add_argument("--run-name", default=None, help="output directory name (default: a timestamp)")
    add_output_flags(p, large=f"go on when the grid has more than {MAX_CELLS:,} cells (optimizers × β1 × β2)")
    add_ray_flags(p)


def _validate(args: argparse.Namespace) -> tuple[ProblemConfig, list[str], np.ndarray, np.ndarray]:
    for flag, (lo, hi, n) in (("--beta1", args.beta1), ("--beta2", args.beta2)):
        if not (0 <= lo <= hi < 1) or not 1 <= n <= MAX_CELLS or not float(n).is_integer():
            raise UsageError(
                f"{flag} needs 0 <= LO <= HI < 1 and a whole N from 1 to {MAX_CELLS:,}, got {lo:g} {hi:g} {n:g}"
            )
    cells = len(args.optimizers) * int(args.beta1[2]) * int(args.beta2[2])  # counted before any grid is built
    if cells > MAX_CELLS and not args.allow_large:
        raise UsageError(f"phase: {cells:,} cells is probably a typo; pass --allow-large to go on")
    if cells > MAX_LARGE_CELLS:
        raise UsageError(
            f"phase: {cells:,} cells would need about {cells * BYTES_PER_CELL / 1e9:,.0f} GB of memory: at most "
            f"{MAX_LARGE_CELLS:,} even with --allow-large"
        )
    if args.steps < 1:
        raise UsageError(f"--steps must be a positive integer, got {args.steps}")
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    if len(set(args.optimizers)) != len(args.optimizers) or any("/" in s for s in args.optimizers):
        raise UsageError(f"--optimizers must be distinct specs without '/', got {args.optimizers}")
    problem = ProblemConfig(
        setting=args.setting, preset=args.preset, c=args.c, delta=args.delta, seed=args.seed, dtype=args.dtype
    )
    try:
        problem.functions()
        for spec in args.optimizers:  # resolve() range-checks lr and eps
            fixed = sorted({"beta1", "beta2"} & set(parse_spec(spec)[1]))
            if fixed:
                raise ValueError(f"{spec}: the phase diagram sweeps {' and '.join(fixed)}; a spec cannot fix them")
            choice = resolve(spec, {"lr": args.lr, "eps": args.eps})
            if not choice.fused or "beta1" not in choice.hp or "beta2" not in choice.hp:
                raise ValueError(f"{spec}: the phase diagram needs a fused optimizer with β1 and β2")
    except ValueError as e:
        raise UsageError(str(e)) from None
    b1 = beta1_grid(args.beta1[0], args.beta1[1], int(args.beta1[2]))
    b2 = beta2_grid(args.beta2[0], args.beta2[1], int(args.beta2[2]))
    return problem, list(args.optimizers), b1, b2


def run(args: argparse.Namespace) -> int:
    """The ``phase`` command: validate, connect to Ray if asked, run the grid, write csv/json/heat maps."""
    problem_cfg, specs, b1, b2 = _validate(args)
    cells = len(specs) * len(b1) * len(b2)
    with contextlib.ExitStack() as stack:
        cluster = None if args.ray is None else stack.enter_context(connect(args.ray, args.ray_timeout))
        return _run(args, problem_cfg, specs, b1, b2, cells, cluster)


def _start_grid(args, problem_cfg: ProblemConfig, specs: list[str], b1, b2, cells: int, cluster: Cluster | None,
                run_dir: RunDir) -> tuple[Grid, float]:  # fmt: skip
    """Say what runs where, then run the grid: (the grid, when it started)."""
    problem = problem_cfg.functions()
    print(
        f"phase: {', '.join(specs)} on {args.setting}/{args.preset}, {len(b1)} β1 × {len(b2)} β2 = {cells} cells, "
        f"{args.steps:,} steps each, {args.dtype}; x* = {problem.x_star:+g}; writing to {run_dir.final}"
    )
    from tqdm.auto import tqdm

    from .engines import ray_chunk
    from .fused import kernel_cached
    from .windows import lanes_take

    if cluster is not None:
        size = ray_chunk(cells, cluster.cpus(), args.steps)
        print(f"  on {cluster.describe()}, one CPU per task of up to {size} cells")
    elif not kernel_cached(problem_cfg.dtype, lanes_too=lanes_take(cells)):
        print("  compiling kernels (first run only, 5-15 s) ...")
    sys.stdout.flush()
    start = time.perf_counter()
    with tqdm(total=cells * args.steps, unit="step", unit_scale=True, disable=bar_disable(args.progress)) as bar:
        overrides = {"lr": args.lr, "eps": args.eps}
        grid = run_grid(problem_cfg, specs, b1, b2, args.steps, overrides, bar, cluster, args.gamma, args.verdict)
    return grid, start


def _keep(args, problem_cfg: ProblemConfig, specs: list[str], b1, b2, cells: int, cluster: Cluster | None,
          run_dir: RunDir, grid: Grid, elapsed: float) -> Path | None:  # fmt: skip
    """Write phase.csv, the maps and phase.json and release the run directory: where it is, or None when no
    cell took a step (then nothing is kept)."""
    final_x, interrupted = grid.final_x, grid.interrupted
    problem = problem_cfg.functions()
    done = int(np.isfinite(final_x).sum())
    failed = {cell: error for cell, error in grid.failed}
    for error in sorted(set(failed.values())):
        print(f"phase: {sum(e == error for e in failed.values())} cell(s) failed: {error}", file=sys.stderr)
    stopped = int(((grid.steps_done > 0) & ~np.isfinite(final_x)).sum())  # cells a signal cut part-way
    if done + stopped == 0:
        run_dir.release(keep=False)
        print(f"phase: {'interrupted' if interrupted else 'stopped'} before any cell took a step: nothing kept")
        return None

    status = "interrupted" if interrupted else ("failed" if failed else "complete")
    meta = {
        "problem": problem_cfg.describe() | {"x_star": problem.x_star},
        "optimizers": specs,
        "overrides": {k: v for k, v in {"lr": args.lr, "eps": args.eps}.items() if v is not None},
        "steps": args.steps,
        "beta1": b1.tolist(),
        "beta2": b2.tolist(),
        "cells": cells,
        "cells_done": done,
        "cells_interrupted": stopped,
        "gamma": args.gamma,
        "verdict": _verdict_meta(grid, specs) if grid.verdict is not None else None,
        "status": status,
        "interrupted": interrupted,
        "failed_cells": [
            {"optimizer": specs[k], "beta1": float(b1[i]), "beta2": float(b2[j]), "error": error}
            for (k, i, j), error in failed.items()
        ],
        "ray": None if cluster is None else cluster.address,
        "ray_nodes": None if cluster is None else cluster.report(),
        "error": None if grid.lost is None else str(grid.lost),
        "elapsed_seconds": elapsed,
        "version": __version__,
    }
    _write_outputs(run_dir.path, args, specs, b1, b2, grid, failed, problem.x_star, meta)
    return run_dir.release(keep=True)


def _verdict_meta(grid: Grid, specs: list[str]) -> dict:
    """phase.json's ``verdict``: the rule (where it is stated) and each optimizer's count of cells per verdict."""
    import dataclasses

    from .rule import RULE

    counts = {
        spec: {v: int((grid.verdict[k] == n).sum()) for n, v in enumerate(VERDICTS)} for k, spec in enumerate(specs)
    }
    return {"rule": dataclasses.asdict(RULE) | {"doc": "amsgrad_repro/synthetic/rule.py"}, "cells": counts}


def _run(args, problem_cfg: ProblemConfig, specs: list[str], b1, b2, cells: int, cluster: Cluster | None) -> int:
    run_dir = RunDir.claim(Path(args.logdir) / "phase" / args.setting, args.run_name, args.overwrite, args.logdir)
    try:  # from the claim on: a signal or an error before the grid has a result gives the name back
        grid, start = _start_grid(args, problem_cfg, specs, b1, b2, cells, cluster, run_dir)
        final_x, _, interrupted = grid
    except BaseException:
        run_dir.release(keep=False)
        raise
    elapsed = time.perf_counter() - start
    # From the grid's end to the last output a signal waits (a few seconds at most): the outputs are written
    # whole or not at all, and a write error (a full disk) removes the new directory, leaving any old run as it was.
    with defer_signals() as held:
        try:
            final = _keep(args, problem_cfg, specs, b1, b2, cells, cluster, run_dir, grid, elapsed)
        except BaseException as e:
            run_dir.release(keep=False)
            if isinstance(e, OSError):  # not from a file _write_outputs names (matplotlib's own temporaries)
                raise WriteFailed(run_dir.path, e) from None
            raise
    if final is None:
        return _exit(grid)
    done = int(np.isfinite(final_x).sum())
    stopped = int(((grid.steps_done > 0) & ~np.isfinite(final_x)).sum())  # cells a signal cut part-way
    status = "interrupted" if interrupted else ("failed" if grid.failed else "complete")
    for k, spec in enumerate(specs):
        finished = final_x[k][np.isfinite(final_x[k])]
        if finished.size:
            fails = float(np.mean(finished > 0.5))
            line = f"  {spec}: final x > 0.5 (drifted to the wrong end) in {fails:.0%} of the finished cells"
            if grid.verdict is not None:
                codes = grid.verdict[k][np.isfinite(grid.verdict[k])]
                line += "; verdict " + ", ".join(f"{v} {np.mean(codes == n):.0%}" for n, v in enumerate(VERDICTS))
            print(line)
    cut = f", {stopped} stopped part-way (in phase.csv, not in the maps)" if stopped else ""
    verdict = f"interrupted: {done} of {cells} cells finished{cut}" if interrupted else f"{cells} cells ({status})"
    print(f"{verdict} in {elapsed:.1f} s; wrote {final}/phase.csv, phase.json and the heat maps")
    if cluster is not None and cluster.lost_line():
        print(cluster.lost_line())
    if held.hit and not interrupted:
        print("  (the signal came while the outputs were being written: they were finished first, and are complete)")
    return _exit(grid)


def _write_outputs(out: Path, args, specs, b1, b2, grid: Grid, failed: dict, x_star: float, meta: dict) -> None:
    """phase.csv (one row per cell, with its status and the steps it ran: a cell a signal cut part-way has its x
    and R_t/t at that step), the heat maps (finished cells only; PNG, and SVG up to :data:`MAX_SVG_CELLS` cells per
    map), and phase.json last: its presence says every other output is whole."""
    final_x, regret = grid.final_x, grid.regret
    import matplotlib.pyplot as plt

    with writing(out / "phase.csv"), atomic_file(out / "phase.csv", "w", newline="") as f:
        writer = csv.writer(f)
        gamma = grid.negative is not None
        judged = grid.verdict is not None
        head = ["optimizer", "beta1", "beta2", "final_x", "average_regret", "status", "steps_done"]
        writer.writerow(head + (["gamma_negative_steps"] if gamma else []) + (["verdict"] if judged else []))
        for k, spec in enumerate(specs):
            for i, beta1 in enumerate(b1):
                for j, beta2 in enumerate(b2):
                    cell, steps = (k, i, j), int(grid.steps_done[k, i, j])
                    if np.isfinite(final_x[cell]):
                        row, status = [f"{final_x[cell]:.9g}", f"{regret[cell]:.9g}"], "complete"
                    elif steps > 0:
                        row, status = [f"{grid.stopped_x[cell]:.9g}", f"{grid.stopped_regret[cell]:.9g}"], "interrupted"
                    else:
                        row, status = ["", ""], "failed" if cell in failed else "not started"
                    more = []
                    if gamma:
                        more = [f"{grid.negative[cell]:.9g}" if np.isfinite(grid.negative[cell]) else ""]
                    if judged:
                        code = grid.verdict[cell]
                        more.append(VERDICTS[int(code)] if np.isfinite(code) else "")
                    writer.writerow([spec, f"{beta1:.9g}", f"{beta2:.9g}", *row, status, steps, *more])
    vector = len(b1) * len(b2) <= MAX_SVG_CELLS
    if not vector:
        print(f"  {len(b1) * len(b2):,} cells per map: writing PNG only (SVG up to {MAX_SVG_CELLS:,} cells)")
    theorem_cell = ProblemConfig(args.setting, args.preset, c=args.c).theorem_betas()
    maps = {}
    for k, (spec, name) in enumerate(zip(specs, map_names(specs), strict=True)):
        title = f"{spec} on {args.setting}/{args.preset}, {args.steps:,} steps, x* = {x_star:+g}"
        negative = None if grid.negative is None else grid.negative[k]
        verdict = None if grid.verdict is None else grid.verdict[k]
        fig = heat_map_figure(spec, b1, b2, final_x[k], regret[k], title, negative, verdict, theorem_cell)
        files = [f"{name}.png", *([f"{name}.svg"] if vector else [])]  # not with_suffix: "lr-0.01" has a dot
        try:
            for file in files:
                with writing(out / file), atomic_file(out / file) as f:
                    fig.savefig(f, format=file[-3:], **({"dpi": 110} if file.endswith(".png") else {}))
        finally:
            plt.close(fig)
        maps[spec] = files
    write_summary(out, meta | {"maps": maps}, "phase.json")


def _exit(grid: Grid) -> int:
    """1 if the Ray cluster was lost (said on stderr), else 0 or the signal's code."""
    if grid.lost is not None:
        print(one_line(str(grid.lost), "amsgrad_repro: error: "), file=sys.stderr)
        return 1
    return exit_code(grid.interrupted)
