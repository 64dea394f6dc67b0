"""How a real-data run executes: in this process (:func:`train_one`), in worker processes (:func:`run_in_pool`,
``--jobs``) or as a Ray task (:func:`run_on_ray`).

Usage (what :func:`amsgrad_repro.realdata.experiment.run` does)::

    for run in runs:
        train_one(cfg, data, run, run_dir, device, bar, ledger)            # in this process, one after another
    run_in_pool(pool, cfg, runs, run_dir, device, bar, ledger)             # or --jobs runs at once, in workers
    run_on_ray(cluster, cfg, data, runs, run_dir, device, bar, ledger)     # or every run as a Ray task

Both build the same Trial (:func:`_trial`: the seed fixes the weights, the batches and the dropout masks) and put
the same numbers in the :class:`~amsgrad_repro.runs.Ledger`. In this process the logger writes events as the
run goes; in a worker or on Ray the task's logger keeps them in a :class:`~amsgrad_repro.events.ScalarRecord` and
the driver writes them when the task returns. With the same ``--threads`` (default 1) all three write the same
numbers bit for bit (tests/test_realdata_train.py, tests/test_ray_local.py).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..runs import Ledger, WriteFailed
from ..signals import defer_signals
from .models import build_model

if TYPE_CHECKING:
    from ..cluster import Cluster
    from ..pool import Pool
    from .config import RealConfig, RealRun
    from .data import DataSet


def _trial(cfg: RealConfig, data: DataSet, run: RealRun, device: str, logger, extra=()):
    """The run's Trial (model from the seed, its batches, α schedule, test evaluation, ``logger``, ``extra``)."""
    from .trial import Batches, Evaluate, GammaStats, SqrtDecay, build_trial

    model = build_model(cfg.model, data.shape, run.seed).to(device)
    batches = Batches(data.x_train, data.y_train, cfg.batch_size, run.seed, device)
    callbacks = [SqrtDecay()] if cfg.lr_schedule == "sqrt" else []
    callbacks.append(Evaluate(data.x_test, data.y_test, cfg.eval_every, cfg.iterations, device))
    if cfg.gamma:
        callbacks.append(GammaStats(cfg.log_every, cfg.iterations))
    callbacks += [logger, *extra]
    return build_trial(model, build_optimizer(cfg, run, model), batches, cfg.iterations, callbacks).to(device)


def build_optimizer(cfg: RealConfig, run: RealRun, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The run's optimizer, with the invocation's weight decay in every param group: ``weight_decay`` (L2, as
    torch.optim's) and, with ``--decoupled-weight-decay``, ``decoupled_weight_decay`` (AdamW's form), the keys
    torch's optimizers and ours read at every step. Which optimizers have them is checked before anything runs
    (:func:`.experiment._check_weight_decay`)."""
    opt = run.choice.build(model.parameters())
    if cfg.weight_decay:
        for group in opt.param_groups:
            group["weight_decay"] = cfg.weight_decay
            if cfg.decoupled_weight_decay:
                group["decoupled_weight_decay"] = True
    return opt


def _numbers(logger) -> dict:
    """A run's ledger fields from its logger: what TensorBoard holds last, and how far it got."""
    return {
        "final_train_loss": logger.last.get("train_loss"),
        "final_test_loss": logger.last.get("test_loss"),
        "final_test_accuracy": logger.last.get("test_accuracy"),
        "test_evaluated_at": logger.last_step.get("test_loss"),
        "iterations_done": logger.step,
    } | {tag: logger.last.get(tag) for tag in ("gamma_negative_coordinates", "gamma_step_growth") if tag in logger.last}


def train_one(cfg: RealConfig, data: DataSet, run: RealRun, run_dir: Path, device: str, bar, ledger: Ledger) -> None:
    """One run through a torchbearer Trial in this process; its numbers go into ``ledger`` as they are known. A
    signal (KeyboardInterrupt) writes the partial window and propagates; a write error (WriteFailed) fails this
    run and propagates, to end the invocation; any other error fails this run only."""
    from ..callbacks import Progress
    from .trial import RunLogger

    logger = RunLogger(str(run_dir / run.name), cfg.log_every, cfg.iterations)
    progress = Progress(bar, every=min(cfg.log_every, 100))
    start = time.perf_counter()
    ledger.update(run.name, "running")
    status = "failed"
    try:
        try:
            with torch.random.fork_rng(devices=[] if device == "cpu" else None):
                torch.manual_seed(run.seed)  # dropout masks: the same for every optimizer of this seed
                _trial(cfg, data, run, device, logger, [progress]).run()
            status = "complete"
        except KeyboardInterrupt:
            status = "interrupted"
            logger.write_last()
            raise
        except WriteFailed:
            raise
        except Exception as e:  # this run fails; the grid goes on
            ledger.update(run.name, error=f"{type(e).__name__}: {e}")
        finally:
            logger.close()  # the last window reaches the disk, or this raises WriteFailed
    except WriteFailed as e:  # the disk refused: this run failed and the invocation ends (exit 1)
        status = "failed"
        ledger.update(run.name, error=str(e))
        raise
    finally:
        progress.flush(logger.step)
        ledger.update(run.name, status, **_numbers(logger), seconds=time.perf_counter() - start)


def remote_task(cfg: RealConfig, data: DataSet | None, run: RealRun, device: str, threads: int) -> dict:
    """A Ray task or a pool worker's: :func:`train_one`'s run, with ``threads`` torch threads (what it asked for).
    ``data`` None: the pool's shared data set (:func:`amsgrad_repro.pool.shared`). Returns the scalars its logger
    would have written and its ledger fields; an error propagates (the driver fails this run)."""
    from ..callbacks import Progress
    from ..events import ScalarRecord
    from ..pool import shared
    from .trial import RunLogger

    data = shared() if data is None else data
    # in a pool worker the bar is the driver's: iterations go to it through the pool as they are done
    progress = Progress(_Reported(run.name), every=min(cfg.log_every, 100))

    torch.set_num_threads(threads)
    record = ScalarRecord()
    logger = RunLogger("", cfg.log_every, cfg.iterations, record=record)
    start = time.perf_counter()
    interrupted = False
    try:
        with torch.random.fork_rng(devices=[] if device == "cpu" else None):
            torch.manual_seed(run.seed)
            _trial(cfg, data, run, device, logger, [progress]).run()
    except KeyboardInterrupt:  # a pool worker asked to stop: return what the run has, as train_one keeps it
        interrupted = True
        logger.write_last()
    logger.close()
    fields = _numbers(logger)
    return {"scalars": record.scalars, "fields": fields, "seconds": time.perf_counter() - start,
            "interrupted": interrupted}  # fmt: skip


class _Reported:
    """The bar a run in a pool worker moves: each update goes to the driver's (:func:`amsgrad_repro.pool.report`;
    on Ray, nothing)."""

    def __init__(self, key: str) -> None:
        self.key = key

    def update(self, n: int) -> None:
        from ..pool import report

        report(self.key, n)


def run_on_ray(cluster: Cluster, cfg: RealConfig, data: DataSet, runs: list[RealRun], run_dir: Path, device: str, bar,
               ledger: Ledger) -> None:  # fmt: skip
    """Every run as one Ray task (``--threads`` CPUs, default 1, and one GPU on cuda); the data go to the cluster
    once (``ray.put``). Each run's events and ledger row are written when its task returns."""
    threads = cfg.threads or 1
    shared = cluster.ray.put(data)
    jobs = [(run, (cfg, shared, run, device, threads)) for run in runs]
    _collect(cluster.run(remote_task, jobs, num_cpus=threads, num_gpus=1 if device == "cuda" else 0), cfg, run_dir,
             bar, ledger)  # fmt: skip


def run_in_pool(pool: Pool, cfg: RealConfig, runs: list[RealRun], run_dir: Path, device: str, bar,
                ledger: Ledger) -> None:  # fmt: skip
    """Every run as a task of ``pool``'s worker processes (``--jobs`` at once, ``--threads`` torch threads each;
    the data set is already in every worker). Each run's events and ledger row are written when it returns."""
    jobs = [(run, (cfg, None, run, device, cfg.threads or 1)) for run in runs]
    reported: dict[str, int] = {}  # iterations each running run's worker has reported (the bar has moved by them)

    def on_progress(name: str, n: int) -> None:
        reported[name] = reported.get(name, 0) + n
        show_running(bar, reported)
        bar.update(n)

    _collect(pool.run(remote_task, jobs, on_progress), cfg, run_dir, bar, ledger, reported)


def show_running(bar, reported: dict[str, int]) -> None:
    """The bar's postfix while runs train in worker processes: how many, and how far the least and the most
    advanced are, e.g. ``2 running, at iterations 1,240–1,380`` (the total alone would hide a run left behind)."""
    if reported:
        lo, hi = min(reported.values()), max(reported.values())
        at = f"iteration {lo:,}" if lo == hi else f"iterations {lo:,}–{hi:,}"
        bar.set_postfix_str(f"{len(reported)} running, at {at}", refresh=False)
    else:
        bar.set_postfix_str("", refresh=False)


def _collect(results, cfg: RealConfig, run_dir: Path, bar, ledger: Ledger, reported: dict | None = None) -> None:
    """The driver's side of remote runs: each result's events written and its ledger row recorded, whole or not
    at all, as results arrive; a task that failed fails its run. The bar moves by what each run did beyond what
    its worker already ``reported``."""
    reported = {} if reported is None else reported
    from ..events import ScalarRecord

    try:
        for run, result in results:
            with defer_signals(reraise=True):  # a result is written and recorded whole, or not at all
                if isinstance(result, dict):
                    try:
                        ScalarRecord.replay(result["scalars"], str(run_dir / run.name))
                    except WriteFailed as e:  # the disk refused: this run failed and the invocation ends (exit 1)
                        ledger.update(run.name, "failed", error=str(e), seconds=result["seconds"])
                        raise
                    status = "interrupted" if result.get("interrupted") else "complete"
                    ledger.update(run.name, status, **result["fields"], seconds=result["seconds"])
                    bar.update(max(0, result["fields"]["iterations_done"] - reported.get(run.name, 0)))
                else:
                    ledger.update(run.name, "failed", error=result.error)
                    bar.update(max(0, cfg.iterations - reported.get(run.name, 0)))
                if reported.pop(run.name, None) is not None:  # its reports all came before its result
                    show_running(bar, reported)
    finally:
        results.close()
