"""One invocation: a problem, some optimizers (× step sizes × seeds), one run directory, events, a summary.

Usage::

    from amsgrad_repro.synthetic.experiment import Config, ProblemConfig, run
    summary = run(Config(ProblemConfig("online"), steps=20_000, run_name="demo"))
    summary = run(Config(ProblemConfig("stochastic"), optimizers=("adam", "sgd"), lrs=(1e-3, 1e-2), seeds=(0, 1)))

Layout written (the same for every engine)::

    <logdir>/<setting>/<run-name>/<optimizer>[/lr=<lr>][/seed=<seed>]/events.out.tfevents.*
    <logdir>/<setting>/<run-name>/summary.json

``lr=`` and ``seed=`` levels appear only when the invocation sweeps them, so a plain run is
``<run-name>/adam``. Every run writes the tags ``x`` and ``average_regret`` keyed by t, so TensorBoard draws
all of them in one chart and its run filter (a regex) separates optimizer, lr and seed.

The run directory is owned and replaced through the run spine (:class:`amsgrad_repro.runs.RunDir`): never
overwritten unless ``overwrite`` is set, and then only once the new run has something to keep. Ctrl-C or SIGTERM
stops the run cleanly: the events so far are flushed, the last completed step is written, and summary.json lists
every planned run with its status.
"""

from __future__ import annotations

import contextlib
import functools
import math
import sys
import time
from pathlib import Path
from typing import TextIO

from tqdm.auto import tqdm

from .. import __version__
from ..cluster import connect
from ..dashboards import write_layout, write_sessions
from ..optimizers import KEYS, canonical, unused_overrides
from ..report import check_runs, check_volume, fmt_duration, mean_std, print_ending, table
from ..runs import Ledger, RunDir, Stopping, UsageError, check_run_names
from ..values import bar_disable, usable_cpus
from .config import FIGURE1, GAMMA_CHARTS, OVERRIDE_KEYS, Config, ProblemConfig, Run, plan_runs
from .engines import ENGINES, choose_engine, estimate_trial_seconds_per_step, run_on_ray
from .functions import LinearFunctions, beta_condition

# Config and ProblemConfig are defined in .config and exported here, so that one import runs an invocation
__all__ = ["Config", "ProblemConfig", "UsageError", "format_table", "run", "validate"]


def validate(cfg: Config) -> tuple[LinearFunctions, list[Run], list[str]]:
    """Check everything that can be checked before anything is written; raise :class:`UsageError`.
    Returns the problem (for x*), the runs, and warnings to print."""
    # counted first: the messages below print the flags' values
    check_runs(len(cfg.optimizers) * len(cfg.lrs or (None,)) * len(cfg.seeds or (None,)), cfg.allow_large)
    o = cfg.overrides
    lrs = cfg.lrs or ()
    checks = [
        (isinstance(cfg.steps, int) and cfg.steps >= 1, f"--steps must be a positive integer, got {cfg.steps}"),
        (all(math.isfinite(lr) and lr > 0 for lr in lrs), f"--lr values must be > 0, got {list(lrs)}"),
        (len(set(lrs)) == len(lrs), f"--lr has a repeated value: {list(lrs)}"),
        (cfg.log_every >= 1, f"--log-every must be >= 1, got {cfg.log_every}"),
        (len(cfg.optimizers) >= 1, "--optimizers needs at least one name"),
        (
            len({canonical(s) for s in cfg.optimizers}) == len(cfg.optimizers),
            f"--optimizers has a repeated name (aliases count as their name): {list(cfg.optimizers)}",
        ),
        (all(s >= 0 for s in (cfg.seeds or (cfg.problem.seed,))), "--seed values must be >= 0"),
        (cfg.seeds is None or len(set(cfg.seeds)) == len(cfg.seeds), f"--seed has a repeated value: {cfg.seeds}"),
        (
            cfg.problem.setting == "stochastic" or cfg.seeds is None or len(cfg.seeds) == 1,
            "the online problem is deterministic: --seed takes one value there",
        ),
        (
            cfg.problem.p is None or 0.0 <= cfg.problem.p <= 1.0,
            f"--probability must lie in [0, 1], got {cfg.problem.p}",
        ),
        (all("/" not in s for s in cfg.optimizers), "an optimizer spec cannot contain '/'"),
        (cfg.threads is None or cfg.threads >= 1, f"--threads must be >= 1, got {cfg.threads}"),
        (
            cfg.threads is None or cfg.threads <= usable_cpus(),
            f"--threads {cfg.threads} is more than the {usable_cpus()} CPU(s) this process may use",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)
    for key, value in o.items():  # invocation-wide values are checked even if no chosen optimizer takes them
        if value is not None and key in KEYS and not KEYS[key][1](value):
            flag = "--betas" if key in ("beta1", "beta2") else f"--{key.replace('_', '-')}"
            raise UsageError(f"{flag}: {key} must be {KEYS[key][2]}, got {value!r}")
    warnings = []
    try:
        problem = cfg.problem.functions()
        overrides = {k: v for k, v in o.items() if k in OVERRIDE_KEYS and v is not None}
        theorem = cfg.problem.theorem_betas()
        if theorem is not None and "beta1" not in overrides and "beta2" not in overrides:
            overrides |= {"beta1": theorem[0], "beta2": theorem[1]}  # the theorem fixes them unless told otherwise
        runs = plan_runs(cfg, overrides)
    except ValueError as e:
        raise UsageError(str(e)) from None
    check_run_names(r.name for r in runs)
    if cfg.gamma:
        _check_gamma(runs)
    unused = unused_overrides([r.choice for r in runs], o)
    if unused:
        flags = sorted({"--betas" if k in ("beta1", "beta2") else f"--{k.replace('_', '-')}" for k in unused})
        raise UsageError(f"{', '.join(flags)} applies to none of --optimizers {' '.join(cfg.optimizers)}")
    seen = set()
    for run in runs:
        hp = run.choice.hp
        if (
            "beta1" in hp
            and "beta2" in hp
            and not beta_condition(hp["beta1"], hp["beta2"])
            and run.choice.label not in seen
        ):
            seen.add(run.choice.label)
            warnings.append(
                f"warning: {run.choice.label} has β1 = {hp['beta1']:g} ≥ √β2 = {math.sqrt(hp['beta2']):.4g}, "
                "outside the condition β1 < √β2 of Theorems 2-4"
            )
    return problem, runs, warnings


def _check_gamma(runs: list[Run]) -> None:
    """With ``--gamma``, every optimizer must have a Γ (:func:`amsgrad_repro.gamma.why_undefined`): the zoo's all
    do; a ``torch.optim.<Class>`` is built on a throwaway parameter to ask (torch is imported only then)."""
    for run in runs:
        if run.choice.fused:
            continue
        import torch

        from ..gamma import why_undefined

        try:
            optimizer = run.choice.build([torch.nn.Parameter(torch.zeros(()))])
        except Exception:  # its options are wrong: the run itself fails and says so, as without --gamma
            continue
        why = why_undefined(optimizer)
        if why is not None:
            raise UsageError(f"--gamma: {why}")


def claim_run_dir(cfg: Config) -> RunDir:
    """Own ``<logdir>/<setting>/<run-name>`` (see :meth:`amsgrad_repro.runs.RunDir.claim`)."""
    return RunDir.claim(Path(cfg.logdir) / cfg.problem.setting, cfg.run_name, cfg.overwrite, cfg.logdir)


def _planned(run: Run) -> dict:
    """A run's row in summary.json before it has run: what it is, and nulls for what it will log."""
    return {
        "name": run.name,
        "optimizer": run.choice.label,
        "lr": run.choice.hp.get("lr"),
        "seed": run.seed if run.stochastic else None,
        "final_x": None,
        "average_regret": None,
        "steps_done": 0,
        "engine": None,
        "seconds": 0.0,
        "hyperparameters": run.choice.describe(),
    }


def _planned_gamma(run: Run) -> dict:
    """With ``--gamma``, a planned row also has Γ's columns (null until the run logs them)."""
    return _planned(run) | {"gamma": None, "gamma_negative_steps": None}


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(summary: dict) -> str:
    """The end-of-run table. One row per run, or, when seeds are swept, one row per (optimizer, lr) with
    mean ± standard deviation over the seeds whose run is complete (the seeds column says when some are not)."""
    runs = summary["runs"]
    x_star = f"{summary['x_star']:+g}"
    gamma = any("gamma_negative_steps" in r for r in runs)  # --gamma: the fraction of steps with Γ_t < 0 too
    if len({r["seed"] for r in runs}) <= 1:
        rows = [("run", "final x", "R_T/T", "x*", "steps") + (("Γ<0 steps",) if gamma else ())]
        for r in runs:
            steps = f"{r['steps_done']:,}" + ("" if r["status"] == "complete" else f" ({r['status']})")
            row = (r["name"], _num(r["final_x"], "+.6f"), _num(r["average_regret"], ".6f"), x_star, steps)
            rows.append(row + ((_num(r["gamma_negative_steps"], ".2%"),) if gamma else ()))
        return table(rows)
    groups: dict[tuple[str, float | None], list[dict]] = {}
    for r in runs:
        groups.setdefault((r["optimizer"], r["lr"]), []).append(r)
    head = ("optimizer", "lr", "seeds", "final x (mean ± sd)", "R_T/T (mean ± sd)", "x*")
    rows = [head + (("Γ<0 steps (mean ± sd)",) if gamma else ())]
    for (optimizer, lr), members in groups.items():
        done = [m for m in members if m["status"] == "complete"]
        seeds = str(len(members)) if len(done) == len(members) else f"{len(done)} of {len(members)} complete"
        xs = [m["final_x"] for m in done]
        regrets = [m["average_regret"] for m in done]
        lr_text = "" if lr is None else f"{lr:g}"
        row = (optimizer, lr_text, seeds, mean_std(xs, 4, "+"), mean_std(regrets, 4), x_star)
        if gamma:
            negatives = [m["gamma_negative_steps"] for m in done if m["gamma_negative_steps"] is not None]
            row += (mean_std(negatives, 4),)
        rows.append(row)
    return table(rows)


def _print_header(cfg: Config, problem: LinearFunctions, runs: list[Run], run_dir: RunDir, engine: str, why: str,
                  out: TextIO) -> None:  # fmt: skip
    described = cfg.problem.describe()
    optimizers = ", ".join(cfg.optimizers)
    print(
        f"amsgrad_repro {cfg.problem.setting}: {cfg.steps:,} steps, optimizers {optimizers}, {len(runs)} run(s)",
        file=out,
    )
    constants = ", ".join(f"{k}={v:g}" for k, v in described.items() if k in ("C", "delta", "rare_coef",
                          "common_coef", "period", "p"))  # fmt: skip
    print(f"  problem: preset {cfg.problem.preset} ({constants}), {cfg.problem.dtype}", file=out)
    replacing = " (replacing the old run once this one has something to keep)" if run_dir.replacing else ""
    print(
        f"  x* = {problem.x_star:+g} (average slope {problem.mean_slope:+.6g}); writing to {run_dir.final}{replacing}",
        file=out,
    )
    theorem = cfg.problem.theorem_betas()
    if theorem is not None:
        given = "beta1" in cfg.overrides or "beta2" in cfg.overrides
        used = "you set --betas instead" if given else "used for every optimizer with β's unless --betas says otherwise"
        print(
            f"  {cfg.problem.preset} assumes β1 = {theorem[0]:g}, β2 = 1/(1+C²) = {theorem[1]:.6g} ({used})", file=out
        )
    elif cfg.problem.preset != "paper":
        print(f"  {cfg.problem.preset} holds for any β1 < √β2", file=out)
    print(f"  engine: {engine} ({why})", file=out)
    if engine == "fused":
        from .fused import kernel_cached

        if not kernel_cached(cfg.problem.dtype):
            print("  compiling kernels (first run only, 5-15 s) ...", file=out)


def _session_hparams(cfg: Config):
    """A run's row → its hyperparameters for TensorBoard's HParams dashboard (see amsgrad_repro.dashboards)."""
    problem = {"setting": cfg.problem.setting, "preset": cfg.problem.preset, "dtype": cfg.problem.dtype}

    def hparams(row: dict) -> dict:
        own = {k: v for k, v in row["hyperparameters"].items() if k != "optimizer"}
        return problem | {"optimizer": row["optimizer"], "seed": row["seed"], "steps": cfg.steps} | own

    return hparams


def run(cfg: Config, out: TextIO | None = None, err: TextIO | None = None) -> dict:
    """Validate, run everything with the chosen engine, write events and summary.json, print a table.

    Raises :class:`UsageError` (nothing written) on bad input. Returns the summary dict; its ``interrupted``
    field is true if a signal (Ctrl-C, SIGTERM) stopped the run, and every planned run is in ``runs`` with its
    status. ``out``/``err`` default to the current sys.stdout/stderr. Call it inside
    :func:`amsgrad_repro.signals.handle_signals` for SIGTERM to stop it like Ctrl-C (the CLI does).
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    problem, runs, warnings = validate(cfg)
    engine, why = choose_engine(cfg.engine, runs)
    points = -(-cfg.steps // cfg.log_every) + (cfg.steps % cfg.log_every != 0)
    tags = 4 if cfg.gamma else 2  # x, R_t/t (and Γ_t, the fraction of steps with Γ_t < 0)
    volume = check_volume(len(runs), tags * points * len(runs), cfg.allow_large)
    with contextlib.ExitStack() as stack:
        cluster = None if cfg.ray is None else stack.enter_context(connect(cfg.ray, cfg.ray_timeout))
        return _run(cfg, problem, runs, warnings, engine, why, volume, cluster, out, err)


def _run(cfg, problem, runs, warnings, engine, why, volume, cluster, out: TextIO, err: TextIO) -> dict:
    ledger = Ledger((_planned_gamma if cfg.gamma else _planned)(r) for r in runs)
    start = time.perf_counter()
    run_dir = claim_run_dir(cfg)
    with Stopping(ledger, run_dir) as stop:
        _print_header(cfg, problem, runs, run_dir, engine, why, out)
        print(f"  writing {volume}", file=out)
        title = f"Figure 1 ({cfg.problem.setting}): {cfg.problem.setting}/{run_dir.final.name}"
        charts = FIGURE1[cfg.problem.setting] + (GAMMA_CHARTS if cfg.gamma else [])
        write_layout(run_dir.path, title, [(name, [f"^{tag}$"]) for name, tag in charts])
        for warning in warnings:
            print(warning, file=err)
        if cluster is not None:
            print(f"  on {cluster.describe()}, one CPU per task", file=out)
        elif engine == "trial":
            per_step = estimate_trial_seconds_per_step(cfg.problem, runs[0].choice)
            if per_step is not None:
                total = per_step * cfg.steps * len(runs)
                print(
                    f"  estimated time: {fmt_duration(total)} ({per_step * 1e6:.0f} µs/step measured just now "
                    f"× {cfg.steps:,} steps × {len(runs)} run(s))",
                    file=out,
                )
        out.flush()
        disable = bar_disable(cfg.progress)
        total_steps = cfg.steps * len(runs)
        with tqdm(total=total_steps, unit="step", unit_scale=True, disable=disable, dynamic_ncols=True) as bar:
            if cluster is None:
                ENGINES[engine](cfg, runs, run_dir.path, bar, ledger)
            else:
                run_on_ray(cluster, engine, cfg, runs, run_dir.path, bar, ledger)
    elapsed = time.perf_counter() - start
    outcome = ledger.outcome()
    summary = {
        "setting": cfg.problem.setting,
        "steps": cfg.steps,
        "x_star": problem.x_star,
        "config": {
            "problem": cfg.problem.describe() | {"mean_slope": problem.mean_slope},
            "optimizers": list(cfg.optimizers),
            "overrides": {k: v for k, v in cfg.overrides.items() if v is not None},
            "lrs": None if cfg.lrs is None else list(cfg.lrs),
            "seeds": None if cfg.seeds is None else list(cfg.seeds),
            "log_every": cfg.log_every,
            "gamma": cfg.gamma,
            "threads": cfg.threads,
            "engine": engine,
            "ray": None if cluster is None else cluster.address,
            "ray_nodes": None if cluster is None else cluster.report(),
            "run_dir": str(run_dir.final),
        },
        "runs": ledger.rows(),
        **outcome,
        "elapsed_seconds": elapsed,
        "version": __version__,
    }
    group = f"{cfg.problem.setting}/{run_dir.final.name}"
    sessions = functools.partial(write_sessions, run_dir.path, summary["runs"], _session_hparams(cfg), group)
    final, keep = stop.finish(summary, keep=any(r["steps_done"] > 0 for r in summary["runs"]), records=sessions)
    print(format_table(summary), file=out)
    for r in summary["runs"]:
        if r["status"] == "failed" and r.get("error") != summary.get("error"):  # a write error: said once, below
            print(f"run {r['name']} failed: {r.get('error')}", file=err)
    cut = [r for r in summary["runs"] if r["status"] in ("interrupted", "failed")]
    where = f" at step {cut[0]['steps_done']:,} of {cut[0]['name']}" if cut else " between runs"
    if cluster is not None and cluster.lost_line():
        print(cluster.lost_line(), file=out)
    print_ending(summary, final, keep, where, cfg.logdir, out)
    stop.raise_error()  # after the summary: say why the rest did not run
    return summary
