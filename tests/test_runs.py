"""The run spine: run-directory ownership (lock, safe replace), signals, statuses, strict JSON; and the same
rules seen from the command line (SIGTERM, a second --overwrite while a run is written, a failed replacement)."""

import json
import math
import signal
import subprocess
import sys
import time

import pytest

from amsgrad_repro.cli import main
from amsgrad_repro.report import check_volume
from amsgrad_repro.runs import Ledger, RunDir, UsageError, strict, write_summary
from amsgrad_repro.signals import defer_signals


def _files(directory):
    return {p.relative_to(directory): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def test_a_fresh_claim_is_locked_and_released(tmp_path):
    rd = RunDir.claim(tmp_path / "logs/online", "a", overwrite=False, logdir="logs")
    assert rd.path == rd.final == tmp_path / "logs/online/a" and not rd.replacing
    with pytest.raises(UsageError, match="already exists"):
        RunDir.claim(tmp_path / "logs/online", "a", overwrite=False, logdir="logs")
    with pytest.raises(UsageError, match="being written by another process"):
        RunDir.claim(tmp_path / "logs/online", "a", overwrite=True, logdir="logs")
    (rd.path / "x").write_text("kept")
    assert rd.release(keep=True) == rd.final
    assert (rd.final / "x").read_text() == "kept"


def test_nothing_to_keep_removes_what_the_claim_made(tmp_path):
    rd = RunDir.claim(tmp_path / "logs/online", "a", overwrite=False, logdir="logs")
    rd.release(keep=False)
    assert not (tmp_path / "logs").exists()  # the run directory and the parents it created


def test_a_replacement_happens_only_when_it_has_something_to_keep(tmp_path):
    base = tmp_path / "online"
    old = RunDir.claim(base, "r", overwrite=False, logdir="logs")
    (old.path / "events").write_text("old")
    old.release(keep=True)
    before = _files(base / "r")

    failed = RunDir.claim(base, "r", overwrite=True, logdir="logs")
    assert failed.replacing and failed.path != failed.final and failed.path.name.startswith(".")
    (failed.path / "events").write_text("new, then failed")
    failed.release(keep=False)
    assert _files(base / "r") == before  # the old run is untouched
    assert sorted(p.name for p in base.iterdir()) == ["r"]  # no staging left behind

    new = RunDir.claim(base, "r", overwrite=True, logdir="logs")
    (new.path / "events").write_text("new")
    new.release(keep=True)
    assert (base / "r/events").read_text() == "new"
    assert sorted(p.name for p in base.iterdir()) == ["r"]


@pytest.mark.parametrize(
    ("name", "says"),
    [("a/b", "--run-name"), (".hidden", "--run-name"), ("x" * 300, "--run-name"), ("..", "--run-name")],
)
def test_bad_run_names_are_blamed_on_the_run_name_and_leave_nothing(tmp_path, name, says):
    with pytest.raises(UsageError, match=says):
        RunDir.claim(tmp_path / "logs/online", name, overwrite=False, logdir="logs")
    assert not (tmp_path / "logs").exists()


def test_an_unwritable_logdir_is_blamed_on_the_logdir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UsageError, match="cannot write to --logdir"):
        RunDir.claim(blocker / "online", "a", overwrite=False, logdir=str(blocker))


def test_default_names_are_timestamps_that_never_collide(tmp_path):
    dirs = [RunDir.claim(tmp_path, None, overwrite=False, logdir="logs") for _ in range(3)]
    assert len({d.final for d in dirs}) == 3
    for d in dirs:
        d.release(keep=True)


def test_the_ledger_lists_every_planned_run_with_its_status():
    ledger = Ledger([{"name": "a"}, {"name": "b"}, {"name": "c"}])
    ledger.update("a", "complete", loss=1.0)
    ledger.update("b", "running")
    ledger.stop()
    rows = ledger.rows()
    assert [r["status"] for r in rows] == ["complete", "interrupted", "not started"]
    assert ledger.outcome()["status"] == "interrupted" and ledger.outcome()["interrupted"]
    assert ledger.outcome()["runs_by_status"] == {"not started": 1, "complete": 1, "interrupted": 1}
    with pytest.raises(ValueError):
        Ledger([{"name": "a"}, {"name": "a"}])


def test_summary_json_is_strict(tmp_path):
    import numpy as np

    path = write_summary(tmp_path, {"a": float("nan"), "b": [float("inf"), 1.5], "c": np.float32(2.0), "d": (1, 2)})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [None, 1.5], "c": 2.0, "d": [1, 2]}
    assert strict({"x": -math.inf}) == {"x": None}


def test_a_sweep_that_is_probably_a_typo_needs_a_flag(tmp_path, capsys):
    with pytest.raises(UsageError, match="allow-large"):
        check_volume(100_001, 10, allow_large=False)
    check_volume(100_001, 10, allow_large=True)
    code = main(["stochastic", "--seed", "0:20000", "--steps", "10", "--logdir", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "40,000 runs" in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_defer_signals_holds_a_signal_until_the_block_ends():
    import os

    with defer_signals() as d:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert d.hit  # recorded, not raised
    with pytest.raises(KeyboardInterrupt), defer_signals(reraise=True):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)


def test_torch_optim_classes_that_cannot_run_are_refused_before_anything_is_written(tmp_path, capsys):
    for spec in ("torch.optim.LBFGS", "torch.optim.SparseAdam", "torch.optim.Adam,lr=inf"):
        code = main(["online", "--steps", "10", "--optimizers", spec, "--logdir", str(tmp_path), "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and spec.split(",")[0] in err
    assert not any(tmp_path.iterdir())


def test_sigterm_and_a_concurrent_overwrite(tmp_path, capsys, read_scalars, read_summary, spawn):
    """A run being written cannot be overwritten by a second process; SIGTERM stops it like Ctrl-C (exit 143,
    events readable, summary says where and why it stopped); then a failed --overwrite leaves it as it was."""
    argv = ["online", "--steps", "50000000", "--engine", "trial", "--log-every", "500"]
    argv += ["--logdir", str(tmp_path), "--run-name", "live"]
    proc = spawn([sys.executable, "-m", "amsgrad_repro", *argv], stdout=subprocess.PIPE, text=True)
    run_dir = tmp_path / "online/live"
    deadline = time.time() + 600  # a hang guard only
    while time.time() < deadline and not any((run_dir / "adam").glob("events.*")):
        time.sleep(0.2)
    assert main([*argv, "--overwrite", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"being written by another process (pid {proc.pid})" in err
    while time.time() < deadline and "x" not in read_scalars(run_dir / "adam"):  # a step logged: an event
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode == 143
    summary = read_summary(run_dir)
    assert summary["stopped_by"] == "SIGTERM" and summary["status"] == "interrupted"
    assert [r["status"] for r in summary["runs"]] == ["interrupted", "not started"]
    cut = summary["runs"][0]
    assert read_scalars(run_dir / "adam")["x"][-1][0] == cut["steps_done"] > 0

    before = _files(run_dir)
    bad = ["online", "--steps", "10", "--logdir", str(tmp_path), "--run-name", "live", "--overwrite"]
    assert main([*bad, "--optimizers", "torch.optim.LBFGS", "--no-progress"]) == 2
    assert _files(run_dir) == before
    assert sorted(p.name for p in (tmp_path / "online").iterdir()) == ["live"]


def test_a_sweep_runs_in_bounded_file_descriptors(tmp_path, read_summary):
    """200 runs, each with its own TensorBoard writer (about 3 descriptors each), under a limit of 256: the fused
    engine opens at most 64 writers at a time, so the sweep fits however large it is."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    argv = ["stochastic", "--seed", "0:100", "--steps", "2000", "--logdir", str(tmp_path), "--run-name", "many"]
    proc = subprocess.run(
        [sys.executable, "-m", "amsgrad_repro", *argv], capture_output=True, text=True, preexec_fn=limit, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = read_summary(tmp_path / "stochastic/many")
    assert summary["runs_by_status"] == {"complete": 200}
