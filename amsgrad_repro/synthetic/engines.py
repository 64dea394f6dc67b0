"""How the synthetic runs execute: the Trial engine, the fused engine, and either of them on a Ray cluster.

Usage (what :func:`amsgrad_repro.synthetic.experiment.run` does)::

    engine, why = choose_engine("auto", runs)
    ENGINES[engine](cfg, runs, run_dir, bar, ledger)                      # in this process
    run_on_ray(cluster, engine, cfg, runs, run_dir, bar, ledger)          # the same runs, as Ray tasks

Each engine receives the invocation's config, its planned runs, the run directory, a tqdm bar (in steps) and
the :class:`~amsgrad_repro.runs.Ledger`, and records every run's numbers and status in the ledger as they are
known. In this process the loggers write events as the runs go; on Ray the tasks (:func:`fused_task`,
:func:`trial_task`) return what they would have written and the driver writes it, run by run, as results
arrive. A run is a pure function of its configuration and seed, so both paths write the same numbers.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..events import EventWriter, ScalarRecord
from ..optimizers import Choice
from ..runs import Ledger, UsageError, WriteFailed
from ..signals import defer_signals

if TYPE_CHECKING:
    from ..cluster import Cluster
    from .config import Config, ProblemConfig, Run

#: runs per fused call in this process: each holds a TensorBoard writer (a file descriptor) open while it runs,
#: so a sweep of any size keeps at most this many open
FUSED_CHUNK = 64
#: on Ray, a fused task gets about this many run-steps (runs × steps), so that a task lasts seconds, not
#: milliseconds: ~1 s of the lane kernel (Adam-family grids), ~10 s of the single-run kernel on one core; a 10 M-step
#: run is 1 % of a task. (It was 2·10⁸ before the lanes: a 100 × 100 phase grid then took 23 s of cells on a local
#: Ray against 8.7 s in process, in 50 tasks of 0.2 s of kernel each.)
TASK_RUN_STEPS = 1_000_000_000
#: on Ray, a fused task returns at most about this many logged points (x and R_t/t, 16 bytes each)
TASK_POINTS = 2_000_000


def estimate_trial_seconds_per_step(problem_cfg: ProblemConfig, choice: Choice) -> float | None:
    """Time 300 Trial steps of a throwaway problem (no logging) and return seconds per step; None if the
    optimizer raised on the way (the run itself will fail with the error, and say so)."""
    from .trial import build_trial

    problem = problem_cfg.make()
    trial = build_trial(problem, choice.build(problem.parameters()), steps=300)
    start = time.perf_counter()
    try:
        trial.run()
    except Exception:
        return None
    return (time.perf_counter() - start) / 300


def _one_line(error: Exception) -> str:
    return f"{type(error).__name__}: {error}".strip().splitlines()[0]


def run_trial_engine(cfg: Config, runs: list[Run], run_dir: Path, bar, ledger: Ledger) -> None:
    """Each run in turn through a torchbearer Trial (:func:`amsgrad_repro.synthetic.trial.build_trial`), one writer
    open at a time. A signal stops the run in progress (its last step is written) and the ones after it. An
    error the optimizer raises (``torch.optim.Adam,lr=1e308``: a step that overflows float32) fails that run,
    with what it logged up to there, and the next run goes on, as on real data and on Ray."""
    from .trial import Progress, ScalarLogger, build_trial

    for run in runs:
        problem = cfg.problem.with_seed(run.seed).make()
        logger = ScalarLogger(str(run_dir / run.name), cfg.log_every, cfg.steps)
        progress = Progress(bar, every=min(cfg.log_every, 1000))
        trial = build_trial(
            problem, run.choice.build(problem.parameters()), cfg.steps, callbacks=[logger, progress], gamma=cfg.gamma
        )
        start = time.perf_counter()
        ledger.update(run.name, "running", engine="trial")
        error = None
        try:
            try:
                trial.run()
            except KeyboardInterrupt:
                logger.write_last()
                raise
            except WriteFailed:
                raise
            except Exception as e:  # the optimizer's own error: this run fails, the others go on
                error = _one_line(e)
                logger.write_last()
            finally:
                logger.close()  # the last window reaches the disk, or this raises WriteFailed
        except WriteFailed as e:  # the disk refused: this run failed and the invocation ends (exit 1)
            ledger.update(run.name, "failed", error=str(e))
            raise
        finally:
            progress.flush(logger.last_step)
            ledger.update(
                run.name,
                final_x=logger.last_metrics.get("x", float(problem.x.detach())),
                average_regret=logger.last_metrics.get("average_regret"),
                steps_done=logger.last_step,
                seconds=time.perf_counter() - start,
                **_gamma_row(cfg, logger.last_metrics.get("gamma"), logger.last_metrics.get("gamma_negative_steps")),
            )
        ledger.update(
            run.name, "complete" if error is None else "failed", **({} if error is None else {"error": error})
        )


def _finite(value: float | None) -> float | None:
    """A value for summary.json: NaN (Γ at t = 1, where it is not defined) is written as null."""
    return None if value is None or math.isnan(value) else float(value)


def _gamma_row(cfg: Config, gamma: float | None, negative: float | None) -> dict:
    """A run's Γ columns in summary.json, with ``--gamma``: Γ_T and the fraction of steps with Γ_t < 0."""
    return {"gamma": _finite(gamma), "gamma_negative_steps": _finite(negative)} if cfg.gamma else {}


def run_fused_engine(cfg: Config, runs: list[Run], run_dir: Path, bar, ledger: Ledger) -> None:
    """The runs through the compiled loop (:func:`amsgrad_repro.synthetic.fused.simulate`), :data:`FUSED_CHUNK` at a
    time, writing the same tags at the same steps as the Trial, in bulk (:class:`~amsgrad_repro.events.EventWriter`).
    Runs are independent in the kernel, so chunking changes no number; it bounds open files and memory. A write
    error closes every writer of the chunk and propagates (:class:`~amsgrad_repro.runs.WriteFailed`)."""
    from .fused import FusedRun, simulate

    for first in range(0, len(runs), FUSED_CHUNK):
        chunk = runs[first : first + FUSED_CHUNK]
        seeds = sorted({run.seed for run in chunk})
        problems = [cfg.problem.with_seed(seed).functions() for seed in seeds]
        fused = [FusedRun(run.choice, seeds.index(run.seed)) for run in chunk]
        writers: list[EventWriter] = []
        for run in chunk:
            try:
                writers.append(EventWriter(run_dir / run.name))
            except WriteFailed:
                _close_all(writers)
                raise

        def on_log(ts, xs, regrets, writers=writers) -> None:
            steps = ts.tolist()
            for writer, x_row, r_row in zip(writers, xs.tolist(), regrets.tolist(), strict=True):
                writer.add_scalars("x", x_row, steps)
                writer.add_scalars("average_regret", r_row, steps)

        def on_gamma(ts, gammas, negatives, writers=writers) -> None:
            steps = ts.tolist()
            for writer, g_row, n_row in zip(writers, gammas.tolist(), negatives.tolist(), strict=True):
                writer.add_scalars("gamma", g_row, steps)
                writer.add_scalars("gamma_negative_steps", n_row, steps)

        for run in chunk:
            ledger.update(run.name, "running", engine="fused")

        def on_window(n: int, k: int = len(chunk)) -> None:
            bar.update(n * k)

        start = time.perf_counter()
        try:
            result = simulate(
                problems,
                fused,
                cfg.steps,
                log_every=cfg.log_every,
                on_log=on_log,
                on_window=on_window,
                dtype=cfg.problem.dtype,
                gamma=cfg.gamma,
                on_gamma=on_gamma,
                threads=cfg.threads,
            )
            _close_all(writers, first_error=True)
        except BaseException:
            _close_all(writers)
            raise
        seconds = time.perf_counter() - start
        gammas = result.gamma if cfg.gamma else [None] * len(chunk)
        negatives = result.gamma_negative_steps if cfg.gamma else [None] * len(chunk)
        for run, x, r, g, f in zip(chunk, result.x, result.average_regret, gammas, negatives, strict=True):
            ledger.update(
                run.name,
                "interrupted" if result.interrupted else "complete",
                final_x=float(x),
                average_regret=float(r),
                steps_done=result.steps_done,
                seconds=seconds,
                **_gamma_row(cfg, g, f),
            )
        if result.interrupted or result.stop_requested:
            raise KeyboardInterrupt  # the signal was deferred through the kernel's window: stop here


def _close_all(writers: list[EventWriter], first_error: bool = False) -> None:
    """Close every writer, even after one fails; with ``first_error`` raise the first write error afterwards
    (else the error already propagating is the one that counts)."""
    error = None
    for writer in writers:
        try:
            writer.close()
        except WriteFailed as e:
            error = error or e
    if first_error and error is not None:
        raise error


ENGINES = {"fused": run_fused_engine, "trial": run_trial_engine}


def choose_engine(requested: str, runs: list[Run]) -> tuple[str, str]:
    """(engine, reason). ``auto`` takes ``fused`` when it implements every optimizer, else ``trial``;
    an explicit ``fused`` with an optimizer it lacks is a :class:`UsageError`, never a silent fallback."""
    lacking = sorted({run.choice.label for run in runs if not run.choice.fused})
    if requested == "fused" and lacking:
        raise UsageError(f"the fused engine does not implement {', '.join(lacking)}: use --engine trial (or auto)")
    if requested == "auto":
        if lacking:
            return "trial", f"auto: {', '.join(lacking)} has no fused kernel"
        return "fused", "auto: every optimizer has a fused kernel"
    if requested not in ENGINES:
        raise UsageError(f"unknown engine {requested!r}: choose from auto, {', '.join(ENGINES)}")
    return requested, "as requested"


def _write_fused(run_dir: Path, names: list[str], ts: np.ndarray, series: dict[str, np.ndarray]) -> None:
    """The fused engine's scalars of finished runs, one writer at a time (the driver's side of a Ray task):
    ``series`` maps each tag to its (runs, points) values."""
    steps = ts.tolist()
    rows = {tag: values.tolist() for tag, values in series.items()}
    for i, name in enumerate(names):
        with EventWriter(run_dir / name) as writer:
            for tag, values in rows.items():
                writer.add_scalars(tag, values[i], steps)


def fused_task(
    problems: list[ProblemConfig],
    runs: list[tuple[Choice, int]],
    steps: int,
    log_every: int,
    dtype: str,
    gamma: bool = False,
) -> dict:
    """A Ray task: ``runs`` (choice, index into ``problems``) through :func:`~amsgrad_repro.synthetic.fused.simulate` on
    one core; returns the snapshots at the log points (``ts``, and ``series``: tag → (runs, points)), the final
    values and the seconds it took."""
    import numba

    from .fused import FusedRun, simulate

    numba.set_num_threads(1)  # the task asked Ray for one CPU
    ts, xs, rs, gs, ns = [], [], [], [], []

    def on_log(t, x, r) -> None:
        ts.append(t)
        xs.append(x)
        rs.append(r)

    def on_gamma(t, g, n) -> None:
        gs.append(g)
        ns.append(n)

    start = time.perf_counter()
    made = [p.functions() for p in problems]
    result = simulate(
        made, [FusedRun(c, i) for c, i in runs], steps, log_every=log_every, on_log=on_log, dtype=dtype,
        gamma=gamma, on_gamma=on_gamma,
    )  # fmt: skip
    series = {"x": np.concatenate(xs, axis=1), "average_regret": np.concatenate(rs, axis=1)}
    if gamma:
        series |= {"gamma": np.concatenate(gs, axis=1), "gamma_negative_steps": np.concatenate(ns, axis=1)}
    return {
        "ts": np.concatenate(ts),
        "series": series,
        "final_x": result.x,
        "final_regret": result.average_regret,
        "final_gamma": result.gamma,
        "final_negative": result.gamma_negative_steps,
        "steps_done": result.steps_done,
        "seconds": time.perf_counter() - start,
    }


def trial_task(problem: ProblemConfig, choice: Choice, steps: int, log_every: int, gamma: bool = False) -> dict:
    """A Ray task: one run through the torchbearer Trial, on one torch thread; returns its scalars as the
    :class:`~amsgrad_repro.synthetic.trial.ScalarLogger` would have written them, and its final values."""
    import torch

    from .trial import ScalarLogger, build_trial

    torch.set_num_threads(1)
    made = problem.make()
    record = ScalarRecord()
    logger = ScalarLogger("", log_every, steps, record=record)
    start = time.perf_counter()
    build_trial(made, choice.build(made.parameters()), steps, callbacks=[logger], gamma=gamma).run()
    return {
        "scalars": record.scalars,
        "final_x": logger.last_metrics["x"],
        "average_regret": logger.last_metrics["average_regret"],
        "gamma": logger.last_metrics.get("gamma"),
        "gamma_negative_steps": logger.last_metrics.get("gamma_negative_steps"),
        "steps_done": logger.last_step,
        "seconds": time.perf_counter() - start,
    }


def ray_chunk(runs: int, cpus: int, steps: int, points: int = 1) -> int:
    """Runs per fused Ray task: about :data:`TASK_RUN_STEPS` run-steps, at most :data:`TASK_POINTS` logged
    points (runs × ``points`` per run) so that a result stays small, and few enough that every one of the
    cluster's ``cpus`` gets at least two tasks; at least 1."""
    return max(1, min(TASK_RUN_STEPS // steps, TASK_POINTS // points, -(-runs // (2 * max(cpus, 1)))))


def run_on_ray(cluster: Cluster, engine: str, cfg: Config, runs: list[Run], run_dir: Path, bar, ledger: Ledger) -> None:
    """Every run as Ray tasks (fused: chunks of :func:`ray_chunk` runs; trial: one run each), one CPU per task.
    The driver writes each run's events and ledger row when its task returns. A task that raised fails its
    runs; Ctrl-C/SIGTERM cancels the rest (they stay "not started") and propagates."""
    jobs = []
    if engine == "fused":
        points = (2 if cfg.gamma else 1) * (-(-cfg.steps // cfg.log_every) + 1)  # per run: x and R_t/t (and Γ's)
        size = ray_chunk(len(runs), cluster.cpus(), cfg.steps, points)
        for first in range(0, len(runs), size):
            chunk = runs[first : first + size]
            seeds = sorted({run.seed for run in chunk})
            problems = [cfg.problem.with_seed(seed) for seed in seeds]
            args = (problems, [(r.choice, seeds.index(r.seed)) for r in chunk], cfg.steps, cfg.log_every,
                    cfg.problem.dtype, cfg.gamma)  # fmt: skip
            jobs.append((chunk, args))
        task = fused_task
    else:
        jobs = [
            ([run], (cfg.problem.with_seed(run.seed), run.choice, cfg.steps, cfg.log_every, cfg.gamma)) for run in runs
        ]
        task = trial_task
    results = cluster.run(task, jobs, num_cpus=1)
    try:
        for chunk, result in results:
            with defer_signals(reraise=True):  # a result is written and recorded whole, or not at all
                _record_result(engine, cfg, chunk, result, run_dir, bar, ledger)
    finally:
        results.close()  # leaving early: stop waiting (what is outstanding ends when the connection closes)


def _record_result(engine: str, cfg: Config, chunk: list[Run], result, run_dir: Path, bar, ledger: Ledger) -> None:
    """One task's result on the driver: its runs' events written and their ledger rows complete (or failed)."""
    names = [run.name for run in chunk]
    if not isinstance(result, dict):  # TaskFailed
        for name in names:
            ledger.update(name, "failed", engine=f"{engine} on ray", error=result.error)
        bar.update(cfg.steps * len(chunk))
        return
    if engine == "fused":
        _write_fused(run_dir, names, result["ts"], result["series"])
        none = [None] * len(names)
        gammas = none if result["final_gamma"] is None else result["final_gamma"].tolist()
        negatives = none if result["final_negative"] is None else result["final_negative"].tolist()
        finals = zip(result["final_x"].tolist(), result["final_regret"].tolist(), gammas, negatives, strict=True)
    else:
        ScalarRecord.replay(result["scalars"], str(run_dir / names[0]))
        finals = [(result["final_x"], result["average_regret"], result["gamma"], result["gamma_negative_steps"])]
    for name, (x, r, g, f) in zip(names, finals, strict=True):
        ledger.update(
            name,
            "complete",
            engine=f"{engine} on ray",
            final_x=x,
            average_regret=r,
            steps_done=result["steps_done"],
            seconds=result["seconds"],
            **_gamma_row(cfg, g, f),
        )
    bar.update(cfg.steps * len(chunk))
