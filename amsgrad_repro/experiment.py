"""One invocation: a problem, some optimizers, one run directory, TensorBoard events and a summary.

Usage::

    from amsgrad_repro.experiment import Config, ProblemConfig, run
    summary = run(Config(ProblemConfig("online"), steps=20_000, run_name="demo"))

Layout written (the same for every engine)::

    <logdir>/<setting>/<run-name>/<optimizer>/events.out.tfevents.*   tags: x, average_regret; step: t
    <logdir>/<setting>/<run-name>/summary.json

An existing run directory is never overwritten unless ``overwrite`` is set. Ctrl-C stops the run cleanly:
the events so far are flushed, the last completed step is written, and summary.json says where it stopped.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

from tqdm.auto import tqdm

from . import __version__
from .optimizers import Hyper, OptimizerSpec, resolve
from .problems import Bounds, LinearProblem, Online, Stochastic


class UsageError(ValueError):
    """Bad input from the user: the CLI prints the message on one line and exits with status 2."""


@dataclass(frozen=True)
class ProblemConfig:
    """Which problem, with which constants. ``period`` is used by ``online``, ``p`` and ``seed`` by
    ``stochastic``."""

    setting: str = "online"
    rare_coef: float = 1010.0
    common_coef: float = -10.0
    period: int = 101
    p: float = 0.01
    seed: int = 0
    x0: float = 0.0
    bounds: tuple[float, float] = (-1.0, 1.0)

    def describe(self) -> dict:
        """The constants that apply to this setting (no ``period`` for stochastic, no ``p``/``seed`` for online)."""
        unused = {"online": ("p", "seed"), "stochastic": ("period",)}.get(self.setting, ())
        return {k: v for k, v in asdict(self).items() if k not in unused}

    def make(self) -> LinearProblem:
        """A fresh problem module (x = x0). Raises ``ValueError`` on bad constants."""
        bounds = Bounds(*self.bounds)
        if self.setting == "online":
            return Online(self.rare_coef, self.common_coef, self.period, self.x0, bounds)
        if self.setting == "stochastic":
            return Stochastic(self.rare_coef, self.common_coef, self.p, self.seed, self.x0, bounds)
        raise ValueError(f"unknown setting {self.setting!r}: choose online or stochastic")


@dataclass(frozen=True)
class Config:
    problem: ProblemConfig = field(default_factory=ProblemConfig)
    steps: int = 10_000_000
    optimizers: tuple[str, ...] = ("adam", "amsgrad")
    hyper: Hyper = field(default_factory=Hyper)
    log_every: int = 1000
    logdir: str = "logs"
    run_name: str | None = None
    overwrite: bool = False
    engine: str = "auto"
    progress: bool | None = None  # None: a bar only on a terminal


@dataclass
class RunResult:
    name: str
    final_x: float
    average_regret: float
    steps_done: int
    status: str = "complete"  # or "interrupted"
    engine: str = "trial"
    seconds: float = 0.0


@dataclass
class Outcome:
    """What an engine returns: the runs it finished (or stopped), and whether Ctrl-C stopped it."""

    results: list[RunResult] = field(default_factory=list)
    interrupted: bool = False


def validate(cfg: Config) -> tuple[LinearProblem, list[OptimizerSpec]]:
    """Check everything that can be checked before anything is written; raise :class:`UsageError`."""
    h = cfg.hyper
    checks = [
        (isinstance(cfg.steps, int) and cfg.steps >= 1, f"--steps must be a positive integer, got {cfg.steps}"),
        (math.isfinite(h.lr) and h.lr > 0, f"--lr must be > 0, got {h.lr}"),
        (all(0.0 <= b < 1.0 for b in h.betas), f"--betas must lie in [0, 1), got {h.betas[0]} {h.betas[1]}"),
        (math.isfinite(h.eps) and h.eps >= 0, f"--eps must be >= 0, got {h.eps}"),
        (cfg.log_every >= 1, f"--log-every must be >= 1, got {cfg.log_every}"),
        (len(cfg.optimizers) >= 1, "--optimizers needs at least one name"),
        (len(set(cfg.optimizers)) == len(cfg.optimizers), f"--optimizers has a repeated name: {cfg.optimizers}"),
        (cfg.problem.seed >= 0, f"--seed must be >= 0, got {cfg.problem.seed}"),
        (
            0.0 <= cfg.problem.p <= 1.0,
            f"--probability must lie in [0, 1], got {cfg.problem.p}",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)
    if cfg.run_name is not None and (not cfg.run_name or os.sep in cfg.run_name or cfg.run_name in (".", "..")):
        raise UsageError(f"--run-name must be a plain directory name, got {cfg.run_name!r}")
    try:
        problem = cfg.problem.make()
        specs = [resolve(name) for name in cfg.optimizers]
    except ValueError as e:
        raise UsageError(str(e)) from None
    return problem, specs


def prepare_run_dir(cfg: Config) -> Path:
    """Create ``<logdir>/<setting>/<run-name>``. A default (timestamp) name gets a ``-2``, ``-3``… suffix if
    taken; an explicit name that exists is an error unless ``overwrite``."""
    base = Path(cfg.logdir) / cfg.problem.setting
    if cfg.run_name is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        name, k = stamp, 1
        while (base / name).exists():
            k += 1
            name = f"{stamp}-{k}"
    else:
        name = cfg.run_name
    run_dir = base / name
    if run_dir.exists() or run_dir.is_symlink():
        if not cfg.overwrite:
            raise UsageError(f"run directory {run_dir} already exists: pick another --run-name or pass --overwrite")
        try:
            shutil.rmtree(run_dir) if run_dir.is_dir() and not run_dir.is_symlink() else run_dir.unlink()
        except OSError as e:
            raise UsageError(f"cannot overwrite {run_dir}: {e.strerror or e}") from None
    try:
        run_dir.mkdir(parents=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"cannot write to --logdir {cfg.logdir}: {e.strerror or e}") from None
    return run_dir


def estimate_trial_seconds_per_step(problem_cfg: ProblemConfig, spec: OptimizerSpec, hyper: Hyper) -> float:
    """Time 300 Trial steps of a throwaway problem (no logging) and return seconds per step."""
    from .trial import build_trial

    problem = problem_cfg.make()
    trial = build_trial(problem, spec.build(problem.parameters(), hyper), steps=300)
    start = time.perf_counter()
    trial.run()
    return (time.perf_counter() - start) / 300


def run_trial_engine(cfg: Config, specs: list[OptimizerSpec], run_dir: Path, bar) -> Outcome:
    """Each optimizer in turn through a torchbearer Trial (:func:`amsgrad_repro.trial.build_trial`)."""
    from .trial import Progress, ScalarLogger, build_trial

    outcome = Outcome()
    for spec in specs:
        problem = cfg.problem.make()
        logger = ScalarLogger(str(run_dir / spec.name), cfg.log_every, cfg.steps)
        progress = Progress(bar, every=min(cfg.log_every, 1000))
        trial = build_trial(
            problem, spec.build(problem.parameters(), cfg.hyper), cfg.steps, callbacks=[logger, progress]
        )
        start = time.perf_counter()
        status = "complete"
        try:
            trial.run()
        except KeyboardInterrupt:
            status = "interrupted"
            logger.write_last()
        finally:
            logger.close()
        progress.flush(logger.last_step)
        outcome.results.append(
            RunResult(
                name=spec.name,
                final_x=logger.last_metrics.get("x", float(problem.x.detach())),
                average_regret=logger.last_metrics.get("average_regret", float("nan")),
                steps_done=logger.last_step,
                status=status,
                engine="trial",
                seconds=time.perf_counter() - start,
            )
        )
        if status == "interrupted":
            outcome.interrupted = True
            break
    return outcome


def run_fused_engine(cfg: Config, specs: list[OptimizerSpec], run_dir: Path, bar) -> Outcome:
    """All optimizers at once through the compiled loop (:func:`amsgrad_repro.fused.simulate`), writing the
    same tags at the same steps as the Trial, with tensorboardX's writer (the one torchbearer uses)."""
    from tensorboardX import SummaryWriter

    from .fused import FusedRun, simulate

    runs = [FusedRun(spec.name, cfg.hyper) for spec in specs]
    writers = [SummaryWriter(str(run_dir / spec.name)) for spec in specs]

    def on_log(ts, xs, regrets) -> None:
        for writer, x_row, r_row in zip(writers, xs, regrets, strict=True):
            for t, x, r in zip(ts.tolist(), x_row.tolist(), r_row.tolist(), strict=True):
                writer.add_scalar("x", x, t)
                writer.add_scalar("average_regret", r, t)

    start = time.perf_counter()
    try:
        result = simulate(
            [cfg.problem.make()],
            runs,
            cfg.steps,
            log_every=cfg.log_every,
            on_log=on_log,
            on_window=lambda n: bar.update(n * len(runs)),
        )
    finally:
        for writer in writers:
            writer.close()
    seconds = time.perf_counter() - start
    status = "interrupted" if result.interrupted else "complete"
    return Outcome(
        results=[
            RunResult(spec.name, float(x), float(r), result.steps_done, status, "fused", seconds)
            for spec, x, r in zip(specs, result.x, result.average_regret, strict=True)
        ],
        interrupted=result.interrupted,
    )


ENGINES = {"fused": run_fused_engine, "trial": run_trial_engine}


def choose_engine(requested: str, specs: list[OptimizerSpec]) -> tuple[str, str]:
    """(engine, reason). ``auto`` takes ``fused`` when it implements every optimizer, else ``trial``;
    an explicit ``fused`` with an optimizer it lacks is a :class:`UsageError`, never a silent fallback."""
    lacking = [spec.name for spec in specs if spec.fused is None]
    if requested == "fused" and lacking:
        raise UsageError(
            f"the fused engine does not implement {', '.join(lacking)}: use --engine trial (or auto) for it"
        )
    if requested == "auto":
        if lacking:
            return "trial", f"auto: {', '.join(lacking)} has no fused kernel"
        return "fused", "auto: every optimizer has a fused kernel"
    if requested not in ENGINES:
        raise UsageError(f"unknown engine {requested!r}: choose from auto, {', '.join(ENGINES)}")
    return requested, "as requested"


def _fmt_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def format_table(summary: dict) -> str:
    """The end-of-run table: optimizer, final x, average regret, x*, steps done."""
    rows = [("optimizer", "final x", "R_T/T", "x*", "steps")]
    for r in summary["runs"]:
        steps = f"{r['steps_done']:,}" + ("" if r["status"] == "complete" else " (interrupted)")
        rows.append((r["name"], f"{r['final_x']:+.6f}", f"{r['average_regret']:.6f}", f"{summary['x_star']:+g}", steps))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_summary(run_dir: Path, summary: dict) -> Path:
    """Write summary.json atomically (a temporary file renamed into place)."""
    path = run_dir / "summary.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def run(cfg: Config, out: TextIO = sys.stdout) -> dict:
    """Validate, run every optimizer with the chosen engine, write events and summary.json, print a table.

    Raises :class:`UsageError` (nothing written) on bad input. Returns the summary dict; its ``interrupted``
    field is true if Ctrl-C stopped the run.
    """
    problem, specs = validate(cfg)
    engine, why = choose_engine(cfg.engine, specs)
    run_dir = prepare_run_dir(cfg)
    x_star = problem.x_star

    print(f"amsgrad_repro {cfg.problem.setting}: {cfg.steps:,} steps, optimizers {', '.join(cfg.optimizers)}", file=out)
    print(f"  x* = {x_star:+g} (average slope {problem.mean_slope:+.6g}); writing to {run_dir}", file=out)
    print(f"  engine: {engine} ({why})", file=out)
    if engine == "trial":
        per_step = estimate_trial_seconds_per_step(cfg.problem, specs[0], cfg.hyper)
        total = per_step * cfg.steps * len(specs)
        print(
            f"  estimated time: {_fmt_duration(total)} ({per_step * 1e6:.0f} µs/step measured just now "
            f"× {cfg.steps:,} steps × {len(specs)} optimizer(s))",
            file=out,
        )
    out.flush()

    start = time.perf_counter()
    disable = None if cfg.progress is None else not cfg.progress
    with tqdm(total=cfg.steps * len(specs), unit="step", unit_scale=True, disable=disable, dynamic_ncols=True) as bar:
        outcome = ENGINES[engine](cfg, specs, run_dir, bar)
    elapsed = time.perf_counter() - start

    summary = {
        "setting": cfg.problem.setting,
        "steps": cfg.steps,
        "x_star": x_star,
        "config": {
            "problem": cfg.problem.describe() | {"mean_slope": problem.mean_slope},
            "optimizers": list(cfg.optimizers),
            "lr": cfg.hyper.lr,
            "betas": list(cfg.hyper.betas),
            "eps": cfg.hyper.eps,
            "log_every": cfg.log_every,
            "engine": engine,
            "run_dir": str(run_dir),
        },
        "runs": [asdict(r) for r in outcome.results],
        "interrupted": outcome.interrupted,
        "elapsed_seconds": elapsed,
        "version": __version__,
    }
    path = write_summary(run_dir, summary)
    print(format_table(summary), file=out)
    if outcome.interrupted:
        last = outcome.results[-1]
        print(f"interrupted at step {last.steps_done:,} of {last.name}; partial results in {path}", file=out)
    else:
        print(f"done in {_fmt_duration(elapsed)}; summary: {path}", file=out)
    print(f"view: tensorboard --logdir {cfg.logdir}", file=out)
    return summary
