"""How a real-data run executes: in this process (:func:`train_one`) or as a Ray task (:func:`run_on_ray`).

Usage (what :func:`amsgrad_repro.realdata.experiment.run` does)::

    for run in runs:
        train_one(cfg, data, run, run_dir, device, bar, ledger)            # in this process, one after another
    run_on_ray(cluster, cfg, data, runs, run_dir, device, bar, ledger)     # or every run as a Ray task

Both build the same Trial (:func:`_trial`: the seed fixes the weights, the batches and the dropout masks) and put
the same numbers in the :class:`~amsgrad_repro.runs.Ledger`. In this process the logger writes events as the
run goes; on Ray the task's logger keeps them in a :class:`~amsgrad_repro.callbacks.ScalarRecord` and the driver
writes them when the task returns. With the same ``--threads`` the two write the same numbers bit for bit.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..runs import Ledger, WriteFailed, defer_signals
from .models import build_model

if TYPE_CHECKING:
    from ..cluster import Cluster
    from .config import RealConfig, RealRun
    from .data import DataSet


def _trial(cfg: RealConfig, data: DataSet, run: RealRun, device: str, logger, extra=()):
    """The run's Trial (model from the seed, its batches, α schedule, test evaluation, ``logger``, ``extra``)."""
    from .trial import Batches, Evaluate, SqrtDecay, build_trial

    model = build_model(cfg.model, data.shape, run.seed).to(device)
    batches = Batches(data.x_train, data.y_train, cfg.batch_size, run.seed, device)
    callbacks = [SqrtDecay()] if cfg.lr_schedule == "sqrt" else []
    callbacks += [Evaluate(data.x_test, data.y_test, cfg.eval_every, cfg.iterations, device), logger, *extra]
    return build_trial(model, run.choice.build(model.parameters()), batches, cfg.iterations, callbacks).to(device)


def _numbers(logger) -> dict:
    """A run's ledger fields from its logger: what TensorBoard holds last, and how far it got."""
    return {
        "final_train_loss": logger.last.get("train_loss"),
        "final_test_loss": logger.last.get("test_loss"),
        "final_test_accuracy": logger.last.get("test_accuracy"),
        "test_evaluated_at": logger.last_step.get("test_loss"),
        "iterations_done": logger.step,
    }


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


def remote_task(cfg: RealConfig, data: DataSet, run: RealRun, device: str, threads: int) -> dict:
    """A Ray task: :func:`train_one`'s run on a worker, with ``threads`` torch threads (what it asked Ray for).
    Returns the scalars its logger would have written and its ledger fields; an error propagates (Ray reports it
    and the driver fails this run)."""
    from ..callbacks import ScalarRecord
    from .trial import RunLogger

    torch.set_num_threads(threads)
    record = ScalarRecord()
    logger = RunLogger("", cfg.log_every, cfg.iterations, record=record)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[] if device == "cpu" else None):
        torch.manual_seed(run.seed)
        _trial(cfg, data, run, device, logger).run()
    logger.close()
    return {"scalars": record.scalars, "fields": _numbers(logger), "seconds": time.perf_counter() - start}


def run_on_ray(cluster: Cluster, cfg: RealConfig, data: DataSet, runs: list[RealRun], run_dir: Path, device: str, bar,
               ledger: Ledger) -> None:  # fmt: skip
    """Every run as one Ray task (``--threads`` CPUs, default 1, and one GPU on cuda); the data go to the cluster
    once (``ray.put``). Each run's events and ledger row are written when its task returns."""
    from ..callbacks import ScalarRecord

    threads = cfg.threads or 1
    shared = cluster.ray.put(data)
    jobs = [(run, (cfg, shared, run, device, threads)) for run in runs]
    results = cluster.run(remote_task, jobs, num_cpus=threads, num_gpus=1 if device == "cuda" else 0)
    try:
        for run, result in results:
            with defer_signals(reraise=True):  # a result is written and recorded whole, or not at all
                if isinstance(result, dict):
                    ScalarRecord.replay(result["scalars"], str(run_dir / run.name))
                    ledger.update(run.name, "complete", **result["fields"], seconds=result["seconds"])
                else:
                    ledger.update(run.name, "failed", error=result.error)
                bar.update(cfg.iterations)
    finally:
        results.close()
