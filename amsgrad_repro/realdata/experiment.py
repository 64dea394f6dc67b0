"""One real-data invocation: a model, a data set, a grid of optimizer × lr × β2 × seed, one run directory.

Usage::

    from amsgrad_repro.realdata.experiment import RealConfig, run
    summary = run(RealConfig("mlp", iterations=2000, run_name="demo"))
    summary = run(RealConfig("logreg", optimizers=("adam", "amsgrad"), lrs=(1e-3, 1e-2), beta2s=(0.99, 0.999),
                             seeds=(0, 1, 2)))

Layout written::

    <logdir>/<model>/<run-name>/<optimizer>[/lr=<lr>][/beta2=<β2>][/seed=<seed>]/events.out.tfevents.*
    <logdir>/<model>/<run-name>/summary.json

A level appears only when the invocation sweeps it. Every run writes ``train_loss``, ``test_loss`` and
``test_accuracy`` keyed by iteration t, so TensorBoard overlays all of them.

The grid is the paper's: every optimizer at every (lr, β2) cell, each cell over the seeds. A run's seed fixes
its initial weights, its minibatch order and its dropout masks, so within a seed every optimizer starts from the
same weights and sees the same batches. The summary gives, per optimizer, each cell as mean ± sd over its
complete runs, and the best cell by final training loss (what ``plot`` draws).

Choices the paper leaves open (beyond the models', see :mod:`.models`):

- **iterations, α, ε**: not stated. Defaults per model are in :data:`MODEL_DEFAULTS`; ε is each optimizer's own,
  except that ``amsgrad-paper`` and ``adamnc`` (ε = 0 in the paper) get ε = 1e-8 here unless told otherwise:
  real gradients are exactly 0 for inputs that never light up (MNIST's border pixels), and 0/√0 is NaN.
- **α_t**: α/√t for logreg and constant α for the others (the paper's), for every optimizer, through
  :class:`.trial.SqrtDecay`; ``--lr-schedule`` changes it.
- **training loss**: the mean minibatch loss over the last ``log_every`` iterations (the paper plots a training
  loss without saying which); the test loss is over the whole test set, dropout off.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import sys
import time
from pathlib import Path
from typing import TextIO

import torch
from tqdm.auto import tqdm

from .. import __version__
from ..cluster import Cluster, connect
from ..dashboards import write_layout, write_sessions
from ..optimizers import canonical, unused_overrides
from ..pool import Pool, usable_cpus
from ..report import check_runs, check_volume, mean_std, print_ending, table
from ..runs import Ledger, RunDir, Stopping, UsageError, check_run_names
from ..values import bar_disable, distinct_names
from .config import FIGURE2, GAMMA_CHARTS, MODEL_DEFAULTS, RealConfig, RealRun, plan
from .data import DATA_SETS, DataSet, load
from .engines import run_in_pool, run_on_ray, train_one
from .models import MODELS, build_model


def _device(requested: str) -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: this torch build or machine has no CUDA device (use cpu or auto)")
    if requested not in ("cpu", "cuda"):
        raise UsageError(f"--device must be auto, cpu or cuda, got {requested!r}")
    return requested


def validate(cfg: RealConfig) -> tuple[RealConfig, list[RealRun], str]:
    """Check everything that can be checked without data; raise :class:`UsageError`. Returns the config with
    defaults filled in, the planned runs and the device."""
    if cfg.model not in MODELS:
        raise UsageError(f"unknown model {cfg.model!r}: choose from {', '.join(MODELS)}")
    cfg = cfg.resolved()
    # counted first: the messages below print the flags' values
    check_runs(len(cfg.optimizers) * len(cfg.lrs) * len(cfg.beta2s or (None,)) * len(cfg.seeds), cfg.allow_large)
    labels = [canonical(s) for s in cfg.optimizers]
    checks = [
        (cfg.data in DATA_SETS, f"--data must be one of {', '.join(DATA_SETS)}, got {cfg.data!r}"),
        (cfg.iterations >= 1, f"--iterations must be a positive integer, got {cfg.iterations}"),
        (cfg.batch_size >= 1, f"--batch-size must be >= 1, got {cfg.batch_size}"),
        (cfg.log_every >= 1, f"--log-every must be >= 1, got {cfg.log_every}"),
        (cfg.eval_every >= 1, f"--eval-every must be >= 1, got {cfg.eval_every}"),
        (all(math.isfinite(lr) and lr > 0 for lr in cfg.lrs), f"--lr values must be > 0, got {list(cfg.lrs)}"),
        (len(set(cfg.lrs)) == len(cfg.lrs), f"--lr has a repeated value: {list(cfg.lrs)}"),
        (all(0 <= b < 1 for b in cfg.beta2s or ()), f"--beta2 values must lie in [0, 1), got {cfg.beta2s}"),
        (len(set(cfg.beta2s or ())) == len(cfg.beta2s or ()), f"--beta2 has a repeated value: {cfg.beta2s}"),
        (cfg.beta1 is None or 0 <= cfg.beta1 < 1, f"--beta1 must lie in [0, 1), got {cfg.beta1}"),
        (cfg.eps is None or (math.isfinite(cfg.eps) and cfg.eps >= 0), f"--eps must be >= 0, got {cfg.eps}"),
        (0 <= cfg.weight_decay < math.inf, f"--weight-decay must be >= 0, got {cfg.weight_decay}"),
        (cfg.weight_decay > 0 or not cfg.decoupled_weight_decay, "--decoupled-weight-decay needs --weight-decay > 0"),
        (len(cfg.seeds) >= 1 and all(s >= 0 for s in cfg.seeds), "--seed values must be >= 0"),
        (len(set(cfg.seeds)) == len(cfg.seeds), f"--seed has a repeated value: {list(cfg.seeds)}"),
        (len(cfg.optimizers) >= 1, "--optimizers needs at least one name"),
        (all("/" not in s for s in cfg.optimizers), "an optimizer spec cannot contain '/'"),
        (len(set(labels)) == len(labels), f"--optimizers names one optimizer twice: {list(cfg.optimizers)}"),
        (cfg.lr_schedule in ("constant", "sqrt"), f"--lr-schedule must be constant or sqrt, got {cfg.lr_schedule}"),
        (cfg.threads is None or cfg.threads >= 1, f"--threads must be >= 1, got {cfg.threads}"),
        (cfg.jobs is None or cfg.jobs >= 1, f"--jobs must be >= 1, got {cfg.jobs}"),
        (cfg.jobs is None or cfg.ray is None, "--jobs and --ray do not go together: Ray places the runs itself"),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cfg.ray is None and cfg.threads is not None and cfg.threads > cpus:
        raise UsageError(f"--threads {cfg.threads:,} is more than the {cpus} CPU(s) this process may use")
    if cfg.jobs is not None and cfg.jobs > 4 * cpus:  # a process each: more than a few per CPU only thrashes
        raise UsageError(f"--jobs {cfg.jobs:,} is more than 4 × the {cpus} CPU(s) this process may use")
    device = _device(cfg.device)
    try:
        runs = plan(cfg)
    except ValueError as e:
        raise UsageError(str(e)) from None
    check_run_names(r.name for r in runs)
    given = {"beta1": cfg.beta1, "beta2": cfg.beta2s, "eps": cfg.eps}
    unused = unused_overrides([r.choice for r in runs], given)
    if unused:
        flags = ", ".join(f"--{k}" for k in unused)
        raise UsageError(f"{flags} applies to none of --optimizers {' '.join(cfg.optimizers)}")
    if cfg.weight_decay:
        _check_weight_decay(cfg, runs)
    if cfg.gamma:
        _check_gamma(runs)
    return cfg, runs, device


def _check_gamma(runs: list[RealRun]) -> None:
    """With ``--gamma``, Γ must be defined for every optimizer of the grid (:func:`amsgrad_repro.gamma.why_undefined`),
    asked of one built on a dummy parameter."""
    import torch

    from ..gamma import why_undefined

    for r in {r.choice.label: r for r in runs}.values():
        try:
            optimizer = r.choice.build([torch.nn.Parameter(torch.zeros(1))])
        except Exception:  # its options are wrong: the run itself fails and says so, as without --gamma
            continue
        why = why_undefined(optimizer)
        if why is not None:
            raise UsageError(f"--gamma: {why}")


def _check_weight_decay(cfg: RealConfig, runs: list[RealRun]) -> None:
    """Every optimizer of the grid has the param-group keys ``--weight-decay`` (and ``--decoupled-weight-decay``)
    set (:func:`.engines.build_optimizer`), or the invocation is refused: one built on a dummy parameter says."""
    import torch

    needed = ("weight_decay", "decoupled_weight_decay") if cfg.decoupled_weight_decay else ("weight_decay",)
    for r in {r.choice.label: r for r in runs}.values():
        defaults = r.choice.build([torch.nn.Parameter(torch.zeros(1))]).defaults
        missing = [k for k in needed if k not in defaults]
        if missing:
            flag = "--decoupled-weight-decay" if "weight_decay" not in missing else "--weight-decay"
            raise UsageError(f"{flag}: {r.choice.label} has no {missing[0]} (its options: {', '.join(defaults)})")


GAMMA_TAGS = ("gamma_negative_coordinates", "gamma_step_growth")


def _planned(run: RealRun, gamma: bool = False) -> dict:
    """A run's row in summary.json before it has run (with ``gamma``, Γ's two columns too)."""
    return {
        "name": run.name,
        "optimizer": run.choice.label,
        "lr": run.lr,
        "beta2": run.beta2,
        "seed": run.seed,
        "final_train_loss": None,
        "final_test_loss": None,
        "final_test_accuracy": None,
        "test_evaluated_at": None,
        "iterations_done": 0,
        "seconds": 0.0,
        "hyperparameters": run.choice.describe(),
    } | ({tag: None for tag in GAMMA_TAGS} if gamma else {})


def cells(rows: list[dict]) -> list[dict]:
    """Per (optimizer, lr, β2): mean and sd over complete runs of the final numbers, and the seeds counted."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["optimizer"], r["lr"], r["beta2"]), []).append(r)
    out = []
    for (optimizer, lr, beta2), members in groups.items():
        done = [m for m in members if m["status"] == "complete"]
        cell = {"optimizer": optimizer, "lr": lr, "beta2": beta2, "runs": len(members), "complete": len(done)}
        keys = ("final_train_loss", "final_test_loss", "final_test_accuracy")
        for key in keys + tuple(tag for tag in GAMMA_TAGS if tag in members[0]):
            values = [m[key] for m in done if m[key] is not None and math.isfinite(m[key])]
            cell[key] = sum(values) / len(values) if values else None
            cell[key + "_sd"] = _sd(values)
        cell["names"] = [m["name"] for m in members]
        out.append(cell)
    return out


def _sd(values: list[float]) -> float | None:
    if len(values) < 2:
        return None
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def best_cells(grid: list[dict]) -> dict[str, dict]:
    """Per optimizer, the cell with the lowest mean final training loss (cells with no complete run skipped)."""
    best: dict[str, dict] = {}
    for cell in grid:
        loss = cell["final_train_loss"]
        if loss is None:
            continue
        if cell["optimizer"] not in best or loss < best[cell["optimizer"]]["final_train_loss"]:
            best[cell["optimizer"]] = cell
    return best


def format_table(summary: dict) -> str:
    """One row per (optimizer, lr, β2) cell: mean ± sd over complete seeds; ``*`` marks each optimizer's best."""
    by_name = {r["name"]: r for r in summary["runs"]}
    best_keys = {(c["optimizer"], c["lr"], c["beta2"]) for c in summary["best"].values()}
    gamma = any(GAMMA_TAGS[0] in cell for cell in summary["cells"])  # --gamma: Γ's share of coordinates too
    rows = [("optimizer", "lr", "β2", "seeds", "train loss", "test loss", "test acc", "best")]
    rows[0] += ("Γ<0 coords", "growth") if gamma else ()
    lr_names = distinct_names([c["lr"] for c in summary["cells"]])  # as many digits as tell the cells apart
    beta2_names = distinct_names([c["beta2"] for c in summary["cells"]])
    for cell in summary["cells"]:
        members = [by_name[n] for n in cell["names"] if by_name[n]["status"] == "complete"]
        seeds = str(cell["runs"]) if cell["complete"] == cell["runs"] else f"{cell['complete']} of {cell['runs']}"
        if cell["complete"] < cell["runs"]:
            states = {by_name[n]["status"] for n in cell["names"]} - {"complete"}
            seeds += f" ({', '.join(sorted(states))})"
        rows.append(
            (
                cell["optimizer"],
                "" if cell["lr"] is None else lr_names[cell["lr"]],
                "" if cell["beta2"] is None else beta2_names[cell["beta2"]],
                seeds,
                mean_std([m["final_train_loss"] for m in members], 4, kind="g"),
                mean_std([m["final_test_loss"] for m in members], 4, kind="g"),
                mean_std([m["final_test_accuracy"] for m in members], 4),
                "*" if (cell["optimizer"], cell["lr"], cell["beta2"]) in best_keys else "",
            )
            + (
                (
                    mean_std([m[GAMMA_TAGS[0]] for m in members], 3),
                    mean_std([m[GAMMA_TAGS[1]] for m in members], 3, kind="g"),
                )
                if gamma
                else ()
            )
        )
    return table(rows)


def _header(cfg: RealConfig, data: DataSet, runs: list[RealRun], run_dir: RunDir, device: str, out: TextIO) -> None:
    from .models import parameter_count

    params = parameter_count(build_model(cfg.model, data.shape, 0))
    print(
        f"amsgrad_repro {cfg.model}: {cfg.iterations:,} iterations × {len(runs)} run(s), batch {cfg.batch_size}, "
        f"α_t = {'α/√t' if cfg.lr_schedule == 'sqrt' else 'α'}; optimizers {', '.join(cfg.optimizers)}",
        file=out,
    )
    c, h, w = data.shape
    print(
        f"  data: {data.label} from {data.source}: {len(data.y_train):,} train / {len(data.y_test):,} test, "
        f"{c}×{h}×{w}; model {params:,} parameters on {device}",
        file=out,
    )
    if data.note:
        print(f"  {data.note}", file=out)
    replacing = " (replacing the old run once this one has something to keep)" if run_dir.replacing else ""
    print(f"  writing to {run_dir.final}{replacing}", file=out)


def _session_hparams(cfg: RealConfig, data: DataSet):
    """A run's row → its hyperparameters for TensorBoard's HParams dashboard (see amsgrad_repro.dashboards)."""
    grid = {"model": cfg.model, "data": data.name, "lr_schedule": cfg.lr_schedule, "batch_size": cfg.batch_size}
    if cfg.weight_decay:
        grid |= {"weight_decay": cfg.weight_decay, "decoupled_weight_decay": cfg.decoupled_weight_decay}

    def hparams(row: dict) -> dict:
        own = {k: v for k, v in row["hyperparameters"].items() if k != "optimizer"}
        return grid | {"optimizer": row["optimizer"], "seed": row["seed"], "iterations": cfg.iterations} | own

    return hparams


def run(cfg: RealConfig, out: TextIO | None = None, err: TextIO | None = None) -> dict:
    """Validate, load the data, train every run of the grid, write events and summary.json, print a table.

    Raises :class:`UsageError` (nothing written) on bad input or missing data. Returns the summary; its
    ``interrupted`` field is true if a signal stopped the invocation, and every planned run is listed with
    its status. Call it inside :func:`amsgrad_repro.signals.handle_signals` for SIGTERM to stop it like Ctrl-C.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    cfg, runs, device = validate(cfg)
    data = load(cfg.data, cfg.data_dir)
    if cfg.batch_size > len(data.y_train):
        raise UsageError(f"--batch-size {cfg.batch_size} is larger than the training set ({len(data.y_train):,})")
    if cfg.model == "cifarnet" and min(data.shape[1:]) < 4:
        raise UsageError(f"cifarnet needs images of at least 4×4, {data.name} has {data.shape[1]}×{data.shape[2]}")
    points = (
        (3 if cfg.gamma else 1) * -(-cfg.iterations // cfg.log_every) + 2 * -(-cfg.iterations // cfg.eval_every) + 3
    )
    volume = check_volume(len(runs), points * len(runs), cfg.allow_large)
    with contextlib.ExitStack() as stack:
        cluster = None if cfg.ray is None else stack.enter_context(connect(cfg.ray, cfg.ray_timeout))
        if cluster is None:  # one thread unless told: the same numbers everywhere, no collapse on a busy machine
            stack.callback(torch.set_num_threads, torch.get_num_threads())  # then the caller's own setting again
            torch.set_num_threads(cfg.threads or 1)
        jobs = 1 if cluster is not None else jobs_for(cfg, len(runs), device)
        preload = ["amsgrad_repro.realdata.engines", "amsgrad_repro.realdata.trial"]  # torch, torchbearer, models
        pool = stack.enter_context(Pool(jobs, shared=data, preload=preload)) if jobs > 1 else None
        return _run(cfg, runs, device, data, volume, cluster, pool, out, err)


def jobs_for(cfg: RealConfig, runs: int, device: str) -> int:
    """Runs at once in this invocation: ``--jobs``, or the CPUs this process may use ÷ ``--threads``; never more
    than the runs; 1 on CUDA (one process owns the GPU)."""
    if device == "cuda":
        return 1
    wanted = cfg.jobs if cfg.jobs is not None else usable_cpus() // (cfg.threads or 1)
    return max(1, min(wanted, runs))


def _run(cfg: RealConfig, runs: list[RealRun], device: str, data: DataSet, volume: str, cluster: Cluster | None,
         pool: Pool | None, out: TextIO, err: TextIO) -> dict:  # fmt: skip
    ledger = Ledger(_planned(r, cfg.gamma) for r in runs)
    start = time.perf_counter()
    run_dir = RunDir.claim(Path(cfg.logdir) / cfg.model, cfg.run_name, cfg.overwrite, cfg.logdir)
    with Stopping(ledger, run_dir) as stop:
        _header(cfg, data, runs, run_dir, device, out)
        print(f"  writing {volume}", file=out)
        title = f"Figure 2 ({cfg.model}): {cfg.model}/{run_dir.final.name}"
        charts = [(name, tag) for name, tag, _ in FIGURE2[cfg.model][1]] + (GAMMA_CHARTS if cfg.gamma else [])
        write_layout(run_dir.path, title, [(name, [f"^{tag}$"]) for name, tag in charts])
        if cluster is not None:
            gpu = " and 1 GPU" if device == "cuda" else ""
            print(f"  on {cluster.describe()}; one task per run, {cfg.threads or 1} CPU(s){gpu} each", file=out)
        elif pool is not None:
            print(f"  {pool.jobs} runs at once in worker processes, {cfg.threads or 1} torch thread(s) each", file=out)
        out.flush()
        disable = bar_disable(cfg.progress)
        total = cfg.iterations * len(runs)
        with tqdm(total=total, unit="it", unit_scale=True, disable=disable, dynamic_ncols=True) as bar:
            if cluster is not None:
                run_on_ray(cluster, cfg, data, runs, run_dir.path, device, bar, ledger)
            elif pool is not None:
                run_in_pool(pool, cfg, runs, run_dir.path, device, bar, ledger)
            for r in runs if cluster is None and pool is None else ():
                bar.set_description(r.name)
                train_one(cfg, data, r, run_dir.path, device, bar, ledger)
    elapsed = time.perf_counter() - start
    rows = ledger.rows()
    grid = cells(rows)
    summary = {
        "model": cfg.model,
        "data": data.describe(),
        "iterations": cfg.iterations,
        "config": {
            "optimizers": list(cfg.optimizers),
            "lrs": list(cfg.lrs),
            "beta1": cfg.beta1,
            "beta2s": None if cfg.beta2s is None else list(cfg.beta2s),
            "eps": cfg.eps,
            "weight_decay": cfg.weight_decay,
            "decoupled_weight_decay": cfg.decoupled_weight_decay,
            "gamma": cfg.gamma,
            "seeds": list(cfg.seeds),
            "batch_size": cfg.batch_size,
            "lr_schedule": cfg.lr_schedule,
            "log_every": cfg.log_every,
            "eval_every": cfg.eval_every,
            "device": device,
            "threads": cfg.threads or 1,
            "jobs": 1 if pool is None else pool.jobs,
            "ray": None if cluster is None else cluster.address,
            "ray_nodes": None if cluster is None else cluster.report(),
            "run_dir": str(run_dir.final),
        },
        "runs": rows,
        "cells": grid,
        "best": best_cells(grid),
        **ledger.outcome(),
        "elapsed_seconds": elapsed,
        "version": __version__,
    }
    group = f"{cfg.model}/{run_dir.final.name}"
    sessions = functools.partial(write_sessions, run_dir.path, rows, _session_hparams(cfg, data), group)
    final, keep = stop.finish(summary, keep=any(r["iterations_done"] > 0 for r in rows), records=sessions)
    print(format_table(summary), file=out)
    for r in rows:
        if r["status"] == "failed" and r.get("error") != summary.get("error"):  # a write error: said once, below
            print(f"run {r['name']} failed: {r.get('error')}", file=err)
    cut = [r for r in rows if r["status"] == "interrupted"]
    where = f" at iteration {cut[0]['iterations_done']:,} of {cut[0]['name']}" if cut else ""
    if cluster is not None and cluster.lost_line():
        print(cluster.lost_line(), file=out)
    print_ending(summary, final, keep, where, cfg.logdir, out)
    stop.raise_error()  # after the summary: say why the rest did not run
    return summary


__all__ = ["MODEL_DEFAULTS", "RealConfig", "RealRun", "format_table", "plan", "run", "validate"]
