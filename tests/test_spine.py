"""The run spine's statuses and summary without any backend: what the summary says for every way an invocation
can end, and strict JSON for every kind of non-finite number. (The Ray tests show the same outcomes with a real
cluster; these run everywhere, so a wrong status is caught without the ``ray`` extra.)

Usage::

    pytest tests/test_spine.py
"""

from __future__ import annotations

import errno
import json
import math
import signal

import numpy as np
import pytest
import torch

from amsgrad_repro import signals
from amsgrad_repro.runs import BackendLost, Ledger, RunDir, Stopping, WriteFailed, strict, write_summary


def _ledger(*names: str) -> Ledger:
    return Ledger({"name": n, "steps_done": 0} for n in names)


@pytest.mark.parametrize(
    ("statuses", "status", "interrupted", "counts"),
    [
        (["complete", "complete"], "complete", False, {"complete": 2}),
        (["complete", "failed"], "failed", False, {"complete": 1, "failed": 1}),
        (["failed", "failed"], "failed", False, {"failed": 2}),
        (["complete", "not started"], "interrupted", True, {"not started": 1, "complete": 1}),
        (["complete", "interrupted"], "interrupted", True, {"complete": 1, "interrupted": 1}),
        (["failed", "not started"], "interrupted", True, {"not started": 1, "failed": 1}),
        (["not started", "not started"], "interrupted", True, {"not started": 2}),
    ],
)
def test_the_outcome_of_every_mix_of_statuses(statuses, status, interrupted, counts):
    ledger = _ledger(*(f"r{k}" for k in range(len(statuses))))
    for k, s in enumerate(statuses):
        ledger.update(f"r{k}", s)
    outcome = ledger.outcome()
    assert outcome["status"] == status
    assert outcome["interrupted"] is interrupted
    assert outcome["runs_by_status"] == counts
    assert ledger.has_results() is any(s in ("complete", "interrupted", "failed") for s in statuses)


def test_unknown_status_is_refused():
    ledger = _ledger("a")
    with pytest.raises(ValueError, match="unknown status"):
        ledger.update("a", "done")


def test_a_stop_between_runs_keeps_the_finished_ones_and_names_the_signal(tmp_path, monkeypatch):
    """A signal after the first run: it stays complete, the second is "not started", the summary says SIGTERM."""
    monkeypatch.setattr(signals, "_stopped_by", [signal.SIGTERM])
    run_dir = RunDir.claim(tmp_path / "online", "r", overwrite=False, logdir=str(tmp_path))
    ledger = _ledger("a", "b")
    with Stopping(ledger, run_dir) as stop:
        ledger.update("a", "running")
        ledger.update("a", "complete", steps_done=10)
        raise signals.Terminated()
    summary = {"runs": ledger.rows(), **ledger.outcome()}
    final, kept = stop.finish(summary, keep=ledger.has_results())
    stop.raise_error()  # nothing to raise: a signal is not an error
    saved = json.loads((final / "summary.json").read_text())
    assert kept and [r["status"] for r in saved["runs"]] == ["complete", "not started"]
    assert saved["status"] == "interrupted" and saved["stopped_by"] == "SIGTERM"
    assert signals.exit_code(saved["interrupted"]) == 143


def test_a_lost_backend_keeps_what_finished_and_is_raised_after_the_summary(tmp_path):
    run_dir = RunDir.claim(tmp_path / "online", "r", overwrite=False, logdir=str(tmp_path))
    ledger = _ledger("a", "b", "c")
    with Stopping(ledger, run_dir) as stop:
        ledger.update("a", "complete", steps_done=10)
        ledger.update("b", "running")
        raise BackendLost("no live node for 120 s")
    summary = {"runs": ledger.rows(), **ledger.outcome()}
    final, _ = stop.finish(summary, keep=True)
    saved = json.loads((final / "summary.json").read_text())
    assert [r["status"] for r in saved["runs"]] == ["complete", "interrupted", "not started"]
    assert saved["status"] == "interrupted" and saved["stopped_by"] is None
    with pytest.raises(BackendLost, match="no live node"):
        stop.raise_error()


def test_a_write_error_fails_the_running_run_and_replaces_no_old_run(tmp_path):
    old = RunDir.claim(tmp_path / "online", "r", overwrite=False, logdir=str(tmp_path))
    (old.path / "marker").write_text("old")
    write_summary(old.path, {"old": True})
    old.release(keep=True)
    run_dir = RunDir.claim(tmp_path / "online", "r", overwrite=True, logdir=str(tmp_path))
    ledger = _ledger("a", "b")
    with Stopping(ledger, run_dir) as stop:
        ledger.update("a", "complete", steps_done=10)
        ledger.update("b", "running")
        raise WriteFailed(run_dir.path / "b" / "events", OSError(errno.ENOSPC, "No space left on device"))
    rows = ledger.rows()
    assert [r["status"] for r in rows] == ["complete", "failed"]
    assert "No space left on device" in rows[1]["error"]
    final, kept = stop.finish({"runs": rows, **ledger.outcome()}, keep=True)
    assert not kept
    assert (final / "marker").read_text() == "old" and json.loads((final / "summary.json").read_text()) == {"old": True}
    assert [p.name for p in final.parent.iterdir()] == ["r"]  # no staging directory left
    with pytest.raises(WriteFailed):
        stop.raise_error()


def test_any_other_error_releases_the_directory_unkept(tmp_path):
    run_dir = RunDir.claim(tmp_path / "online", "r", overwrite=False, logdir=str(tmp_path))
    with pytest.raises(ZeroDivisionError), Stopping(_ledger("a"), run_dir):
        raise ZeroDivisionError
    assert not (tmp_path / "online").exists()


NON_FINITE = [
    float("nan"),
    float("inf"),
    -math.inf,
    np.float32("nan"),
    np.float64("-inf"),
    np.float16("inf"),
    torch.tensor(float("nan")),
    torch.tensor(float("inf"), dtype=torch.float64),
]


@pytest.mark.parametrize("value", NON_FINITE, ids=repr)
def test_every_non_finite_scalar_is_written_as_null(tmp_path, value):
    assert strict(value) is None
    path = write_summary(tmp_path, {"v": value, "nested": [{"v": value}], "tuple": (value, 1)})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"v": None, "nested": [{"v": None}], "tuple": [None, 1]}


def test_finite_numpy_and_torch_scalars_keep_their_value(tmp_path):
    values = {"a": np.float32(0.5), "b": np.int64(7), "c": torch.tensor(2.5), "d": np.bool_(True)}
    path = write_summary(tmp_path, values)
    assert json.loads(path.read_text()) == {"a": 0.5, "b": 7, "c": 2.5, "d": True}


def test_the_worker_pool_reports_each_task_and_a_dead_worker_and_leaves_no_process():
    """amsgrad_repro.pool (``--jobs``): results as they come, a task that raised is a TaskFailed for it alone, a
    worker that died fails what it had not returned, and closing leaves no worker alive."""
    import multiprocessing
    import os

    from amsgrad_repro.pool import Pool
    from amsgrad_repro.runs import TaskFailed

    with Pool(2) as pool:
        results = dict(pool.run(math.sqrt, [(k, (k,)) for k in (4.0, -1.0, 9.0)]))
    assert results == {4.0: 2.0, -1.0: TaskFailed("ValueError: math domain error"), 9.0: 3.0}
    assert not multiprocessing.active_children()

    with Pool(1) as pool:
        (key, outcome), *_ = list(pool.run(os._exit, [("dies", (3,))]))
    assert key == "dies" and isinstance(outcome, TaskFailed) and "worker process died" in outcome.error
    assert not multiprocessing.active_children()


def test_a_pool_worker_shares_the_driver_s_object():
    from amsgrad_repro.pool import Pool, shared

    with Pool(1, shared={"data": [1, 2, 3]}) as pool:
        (_, outcome), *_ = list(pool.run(shared, [("k", ())]))
    assert outcome == {"data": [1, 2, 3]}
