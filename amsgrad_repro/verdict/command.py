"""``python -m amsgrad_repro verdict --optimizers SPEC…``: Reddi's test for any optimizer, one row per optimizer.

Usage::

    python -m amsgrad_repro verdict --optimizers adam amsgrad torch.optim.AdamW
    python -m amsgrad_repro verdict --optimizers my_optim.py:MyAdam,lr=0.01 --steps 400000 --jobs 2
    tensorboard --logdir logs                     # x_t and R_t/t of every run, per problem (Custom Scalars)

What it writes, like every command (docs/runs.md): ``LOGDIR/verdict/RUN_NAME/`` with one TensorBoard run per
battery run (``<spec>/<problem>/<betas>/lr=…[/seed=…]``, tags ``<problem>/x`` and ``<problem>/average_regret``),
the Custom Scalars layout (one category per problem), an HParams session per run with its verdict, and
summary.json: the battery, the rule, and per optimizer its verdict per problem, with every run's numbers.
Each optimizer is one unit of work: in this process, in ``--jobs`` worker processes, or as a Ray task.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import sys
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .. import __version__
from ..cluster import add_ray_flags, connect
from ..pool import Pool, report, usable_cpus
from ..report import check_runs, print_ending, table
from ..runs import Ledger, RunDir, Stopping, TaskFailed, UsageError, check_run_names
from ..signals import defer_signals
from ..values import add_output_flags, bar_disable, count
from .battery import PROBLEMS, Battery, load, merge, parts, plan, run_battery

#: what a verdict is as a number (TensorBoard's HParams metric and the ``verdict`` scalar)
CODES = {"converges": -1.0, "undecided": 0.0, "fails": 1.0}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--optimizers",
        nargs="+",
        required=True,
        metavar="SPEC",
        help="zoo names, torch.optim.<Class>, package.module:Class or path/to/file.py:Class, each with ,key=value "
        "options (beta1/beta2 set betas). A module or file is imported: its code runs (that is the point)",
    )
    p.add_argument("--steps", type=count, default=Battery.steps, help="steps T of every run (judged at T/2 and T)")
    p.add_argument(
        "--lr",
        nargs="+",
        default=[str(v) for v in Battery.lrs],
        metavar="LR",
        help="step sizes of the battery ('own': the optimizer's own default)",
    )
    p.add_argument("--seeds", type=count, default=len(Battery.seeds), help="seeds 0..N-1 of the stochastic problems")
    p.add_argument(
        "--problems", nargs="+", choices=list(PROBLEMS), default=list(PROBLEMS), help="which of the paper's problems"
    )
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="precision of x and states")
    p.add_argument("--jobs", type=count, default=None, help="optimizers at once in worker processes (default: CPUs)")
    p.add_argument("--logdir", default="logs", help="output goes to LOGDIR/verdict/RUN_NAME")
    p.add_argument("--run-name", default=None, help="output directory name (default: a timestamp)")
    add_output_flags(p)
    add_ray_flags(p)


def battery_from_args(args: argparse.Namespace) -> Battery:
    lrs = []
    for text in args.lr:
        if text == "own":
            lrs.append(None)
            continue
        try:
            value = float(text)
        except ValueError:
            raise UsageError(f"--lr takes step sizes or 'own', got {text!r}") from None
        if not (value > 0 and np.isfinite(value)):
            raise UsageError(f"--lr must be positive and finite, got {text!r}")
        lrs.append(value)
    if len(set(lrs)) != len(lrs):
        raise UsageError(f"--lr has a repeated value: {args.lr}")
    if args.steps < 4:
        raise UsageError(f"--steps must be at least 4 (a verdict compares T/2 and T), got {args.steps}")
    if not 1 <= args.seeds <= 1000:
        raise UsageError(f"--seeds must be from 1 to 1,000, got {args.seeds}")
    return Battery(args.steps, tuple(lrs), tuple(range(args.seeds)), tuple(dict.fromkeys(args.problems)), args.dtype)


def task(spec: str, battery: Battery, settings: tuple[str, ...] | None) -> dict:
    """A part of one optimizer's battery (:func:`~.battery.parts`), in a ``--jobs`` worker or a Ray task: a signal
    stops it at the next window and it returns what it has (the runs then are ``interrupted``). In a worker its
    run-steps are reported to the driver's bar after each window (:func:`~amsgrad_repro.pool.report`)."""
    with defer_signals() as held:
        on_window = functools.partial(report, (spec, settings))
        return run_battery(spec, battery, stop=lambda: held.hit, on_window=on_window, settings=settings)


def run(args: argparse.Namespace) -> int:
    battery = battery_from_args(args)
    specs = list(dict.fromkeys(args.optimizers))
    if len(specs) != len(args.optimizers):
        raise UsageError(f"--optimizers names one twice: {args.optimizers}")
    loaded = [load(spec) for spec in specs]  # every spec checked (imported, a dry step) before anything is written
    runs = sum(len(plan(battery, o)) for o in loaded)
    check_run_names(f"{s}/{c.name}" for s, o in zip(specs, loaded, strict=True) for c in plan(battery, o))
    check_runs(runs, args.allow_large)  # the same limits as every command (docs/runs.md, "Size limits")
    with contextlib.ExitStack() as stack:
        cluster = None if args.ray is None else stack.enter_context(connect(args.ray, args.ray_timeout))
        cores = cluster.cpus() if cluster is not None else (args.jobs or usable_cpus())  # parts per optimizer
        tasks = sum(len(parts(battery, o, cores)) for o in loaded)
        jobs = 1 if cluster is not None else max(1, min(args.jobs or usable_cpus(), tasks))
        pool = stack.enter_context(Pool(jobs, preload=["torch"])) if jobs > 1 else None
        return _run(args, battery, specs, loaded, cluster, pool, cores)


def _run(args, battery: Battery, specs, loaded, cluster, pool, cores: int) -> int:
    from ..dashboards import write_layout  # TensorBoard's protos: imported when a verdict runs, not for --help

    ledger = Ledger({"name": s, "engine": o.kind} for s, o in zip(specs, loaded, strict=True))
    start = time.perf_counter()
    run_dir = RunDir.claim(Path(args.logdir) / "verdict", args.run_name, args.overwrite, args.logdir)
    results: dict[str, dict] = {}
    with Stopping(ledger, run_dir) as stop:
        cases = {s: plan(battery, o) for s, o in zip(specs, loaded, strict=True)}
        where = "in this process"
        if cluster is not None:
            where = f"on {cluster.describe()}"
        elif pool is not None:
            where = f"{pool.jobs} at once in worker processes"
        print(f"verdict: {len(specs)} optimizer(s), {sum(map(len, cases.values()))} runs of {battery.steps:,} steps "
              f"({', '.join(battery.problems)}; lr {', '.join('own' if v is None else f'{v:g}' for v in battery.lrs)};"
              f" {len(battery.seeds)} seed(s)), {where}; writing to {run_dir.final}")  # fmt: skip
        sys.stdout.flush()
        charts = [(f"{p}: {what}", [f"^{p}/{tag}$"]) for p in battery.problems
                  for what, tag in (("x_t", "x"), ("R_t / t", "average_regret"))]  # fmt: skip
        write_layout(run_dir.path, f"verdict: {run_dir.final.name}", charts)
        jobs = [
            ((s, part), (s, battery, part))
            for s, o in zip(specs, loaded, strict=True)
            for part in parts(battery, o, cores)
        ]
        expected = {s: sum(key[0] == s for key, _ in jobs) for s in specs}
        total = battery.steps * sum(map(len, cases.values()))  # run-steps
        bar = tqdm(total=total, unit="run-step", unit_scale=True, dynamic_ncols=True,
                   disable=bar_disable(args.progress))  # fmt: skip
        reported: dict = {}  # run-steps each part's worker has reported (the bar has moved by them)

        def on_progress(key, n: int) -> None:
            reported[key] = reported.get(key, 0) + n
            bar.update(n)

        if cluster is not None:
            outcomes = cluster.run(task, jobs, num_cpus=1)
        elif pool is not None:
            outcomes = pool.run(task, jobs, on_progress)
        else:
            outcomes = _in_process(jobs, on_progress)
        pieces: dict[str, list[dict]] = {}
        try:
            for key, outcome in outcomes:
                spec = key[0]
                with defer_signals(reraise=True):  # a result is written and recorded whole, or not at all
                    if not isinstance(outcome, TaskFailed):  # what its windows did not report (Ray: all of it)
                        bar.update(max(0, outcome["steps_done"] * len(outcome["cases"]) - reported.get(key, 0)))
                    _record(spec, outcome, run_dir.path, ledger, pieces)
                    if len(pieces.get(spec, [])) == expected[spec]:
                        _finish(spec, battery, pieces, ledger, results, complete=True)
        finally:
            bar.close()
            if hasattr(outcomes, "close"):
                outcomes.close()
            for spec in pieces:  # parts a stop cut short: what they have, as interrupted
                if spec not in results and pieces[spec]:
                    _finish(spec, battery, pieces, ledger, results, complete=False)
    rows = ledger.rows()
    summary = {
        "command": "verdict",
        "battery": battery.describe(),
        "rule": dataclasses.asdict(battery.rule) | {"doc": "amsgrad_repro/synthetic/rule.py"},
        "optimizers": {s: _describe(results.get(s)) for s in specs},
        "runs": rows,
        **ledger.outcome(),
        "ray": None if cluster is None else cluster.address,
        "elapsed_seconds": time.perf_counter() - start,
        "version": __version__,
    }
    sessions = functools.partial(_sessions, run_dir.path, results, f"verdict/{run_dir.final.name}")
    keep = any(r["steps_done"] > 0 for r in results.values())  # a stop before the first window keeps nothing
    final, keep = stop.finish(summary, keep=keep, records=sessions)
    print(format_table(specs, battery, results, ledger))
    for r in rows:
        if r["status"] == "failed":
            print(f"{r['name']} failed: {r.get('error')}", file=sys.stderr)
    print_ending(summary, final, keep, "", args.logdir, sys.stdout)
    stop.raise_error()
    counts = summary["runs_by_status"]
    if not summary["interrupted"] and counts.get("failed") and not counts.get("complete"):
        return 1
    from ..signals import exit_code

    return exit_code(summary["interrupted"])


def _in_process(jobs, on_progress):
    for key, (spec, battery, part) in jobs:
        with defer_signals() as held:
            on_window = functools.partial(on_progress, key)
            result = run_battery(spec, battery, stop=lambda held=held: held.hit, on_window=on_window, settings=part)
        yield key, result
        if held.hit or result["interrupted"]:  # the fused kernel takes the signal itself and says so
            raise KeyboardInterrupt


def _record(spec: str, outcome, run_dir: Path, ledger: Ledger, pieces: dict) -> None:
    """One part's result: its runs' events written, the part kept for :func:`_finish`; a failed task fails the
    optimizer."""
    from ..events import EventWriter

    if isinstance(outcome, TaskFailed):
        ledger.update(spec, "failed", error=outcome.error)
        return
    ledger.update(spec, "running")
    ts, xs, rs = outcome["ts"], outcome["xs"], outcome["rs"]
    for k, name in enumerate(outcome["cases"]):
        problem = name.split("/")[0]
        with EventWriter(run_dir / spec / name) as writer:
            writer.add_scalars(f"{problem}/x", xs[k].tolist(), ts.tolist())
            writer.add_scalars(f"{problem}/average_regret", rs[k].tolist(), ts.tolist())
            judged = outcome["judged"][k]
            if judged is not None:
                writer.add_scalar(f"{problem}/verdict", CODES[judged["verdict"]], int(ts[-1]))
    pieces.setdefault(spec, []).append(outcome)


def _finish(spec: str, battery: Battery, pieces: dict, ledger: Ledger, results: dict, complete: bool) -> None:
    """An optimizer's parts as one result, and its ledger row."""
    if any(r["name"] == spec and r["status"] == "failed" for r in ledger.rows()):
        return
    result = results[spec] = merge(battery, spec, pieces[spec])
    status = "interrupted" if result["interrupted"] or not complete else "complete"
    ledger.update(spec, status, steps_done=result["steps_done"], seconds=result["seconds"],
                  verdicts={p: v["verdict"] for p, v in result["problems"].items()})  # fmt: skip


def _describe(result: dict | None) -> dict | None:
    if result is None:
        return None
    runs = [
        {"name": name, **hp, **({} if judged is None else judged)}
        for name, hp, judged in zip(result["cases"], result["hyperparameters"], result["judged"], strict=True)
    ]
    return {k: result[k] for k in ("engine", "layout", "problems", "steps_done", "seconds")} | {"runs": runs}


def _sessions(run_dir: Path, results: dict, group: str) -> None:
    from ..dashboards import write_sessions

    rows, values = [], {}
    for spec, result in results.items():
        for name, hp, judged in zip(result["cases"], result["hyperparameters"], result["judged"], strict=True):
            row_name = f"{spec}/{name}"
            rows.append({"name": row_name, "status": "complete" if judged else "interrupted",
                         "seconds": result["seconds"]})  # fmt: skip
            values[row_name] = {
                "optimizer": spec,
                "problem": name.split("/")[0],
                "betas": name.split("/")[1],
                "lr": -1.0 if hp["lr"] is None else float(hp["lr"]),
                "seed": -1.0 if hp["seed"] is None else float(hp["seed"]),
                "verdict": judged["verdict"] if judged else "not judged",
            }
    write_sessions(run_dir, rows, lambda row: values[row["name"]], group)


def format_table(specs, battery: Battery, results: dict, ledger: Ledger) -> str:
    """One row per optimizer, one column per problem: its verdict and how many of its runs said so."""
    rows = [("optimizer", *battery.problems, "engine", "seconds")]
    status = {r["name"]: r["status"] for r in ledger.rows()}
    for spec in specs:
        result = results.get(spec)
        if result is None or not result["problems"]:
            rows.append((spec, *([status[spec]] * len(battery.problems)), "", ""))
            continue
        cells = []
        for p in battery.problems:
            v = result["problems"].get(p)
            cells.append("" if v is None else f"{v['verdict']} ({v['counts'][v['verdict']]}/{v['runs']})")
        rows.append((spec, *cells, f"{result['engine']} ({result['layout']})", f"{result['seconds']:.1f}"))
    return table(rows)
