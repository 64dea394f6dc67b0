"""The third hostile pass (issue 29), classes 4 to 6: no traceback, no leftover after a refusal or a stop, and an
error line of at most 300 characters, prefix and all.

Usage::

    pytest tests/test_third_pass.py

Signals are delivered at a known point (a patched function raises what the signal handler raises, or the test
sends the signal to itself at that point), not after a guessed delay.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from amsgrad_repro.cli import main
from amsgrad_repro.report import MAX_LINE
from amsgrad_repro.runs import Ledger, RunDir, Stopping
from amsgrad_repro.signals import handle_signals

ROOT = Path(__file__).resolve().parents[1]


def _one_line(capsys, code: int, expected: int = 2) -> str:
    err = capsys.readouterr().err.strip()
    assert code == expected and len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


# --- class 4: tracebacks ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, flag, names",
    [
        (["online", "--steps", "50", "--lr", "0.0010000001", "0.0010000002"], "lr", ["0.0010000001", "0.0010000002"]),
        (["stochastic", "--steps", "50", "--lr", "0.1", "0.1000000001"], "lr", ["0.1", "0.1000000001"]),
        (["logreg", "--iterations", "2", "--beta2", "0.9999991", "0.9999992"], "beta2", ["0.9999991", "0.9999992"]),
    ],
)
def test_values_that_print_alike_name_distinct_runs(tmp_path, read_summary, argv, flag, names):
    jobs = ["--jobs", "1"] if argv[0] == "logreg" else []
    assert main([*argv, *jobs, "--logdir", str(tmp_path), "--run-name", "r", "--no-progress"]) == 0
    run_dir = next(tmp_path.glob("*/r"))
    got = sorted({n.split(f"{flag}=")[1].split("/")[0] for n in (r["name"] for r in read_summary(run_dir)["runs"])})
    assert got == names
    for row in read_summary(run_dir)["runs"]:
        assert (run_dir / row["name"]).is_dir()


def test_an_optimizer_that_raises_mid_run_fails_its_run_only(tmp_path, read_summary, capsys):
    argv = ["online", "--steps", "100", "--optimizers", "torch.optim.Adam,lr=1e308", "adam", "--logdir", str(tmp_path)]
    assert main([*argv, "--run-name", "r", "--no-progress"]) == 0
    runs = {r["name"]: r for r in read_summary(tmp_path / "online" / "r")["runs"]}
    bad = runs["torch.optim.Adam,lr=1e308"]
    assert bad["status"] == "failed" and "overflow" in bad["error"] and 0 < bad["steps_done"] < 100
    assert runs["adam"]["status"] == "complete"
    assert "Traceback" not in capsys.readouterr().err
    assert main([*argv[:5], *argv[6:], "--run-name", "s", "--no-progress"]) == 1  # every run failed: exit 1


def test_a_run_name_that_is_not_utf8_is_refused_in_one_line(tmp_path, capsys):
    for argv in (["online", "--steps", "50"], ["logreg", "--iterations", "2"], ["phase", "--steps", "50"]):
        code = main([*argv, "--logdir", str(tmp_path), "--run-name", "\udcff\udcfe", "--no-progress"])
        assert "valid UTF-8" in _one_line(capsys, code)
    assert not any(tmp_path.iterdir())


@pytest.fixture(scope="module")
def real_run(tmp_path_factory) -> Path:
    logs = tmp_path_factory.mktemp("real")
    argv = ["logreg", "--iterations", "4", "--lr", "1e-3", "--log-every", "2", "--eval-every", "2", "--jobs", "1"]
    assert main([*argv, "--logdir", str(logs), "--run-name", "r", "--no-progress"]) == 0
    return logs / "logreg" / "r"


def _damage(summary: dict, how: str) -> object:
    best = next(iter(summary["best"]))
    if how == "best names an int":
        summary["best"][best] = 3
    elif how == "an empty best cell":
        summary["best"][best] = {}
    elif how == "data missing":
        del summary["data"]
    elif how == "data null":
        summary["data"] = None
    elif how == "a string for a number":
        summary["best"][best]["lr"] = "0.001"
    elif how == "train_samples a string":
        summary["data"]["train_samples"] = "4000"
    elif how == "iterations_done null":
        summary["runs"][0]["iterations_done"] = None
    elif how == "names empty":
        summary["cells"][0]["names"] = []
    return summary


@pytest.mark.parametrize(
    "how",
    ["best names an int", "an empty best cell", "data missing", "data null", "a string for a number",
     "train_samples a string", "iterations_done null", "names empty", "deeply nested"],
)  # fmt: skip
def test_plot_on_a_damaged_real_data_summary_is_one_line(real_run, tmp_path, how, capsys):
    import shutil

    run_dir = tmp_path / "r"
    shutil.copytree(real_run, run_dir)
    if how == "deeply nested":  # Python's json recursion ends in a RecursionError
        text = '{"model": "logreg", "runs": [], "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    else:
        text = json.dumps(_damage(json.loads((run_dir / "summary.json").read_text()), how))
    (run_dir / "summary.json").write_text(text)
    _one_line(capsys, main(["plot", str(run_dir)]))
    assert not (run_dir / "figure.png").exists()


# --- class 5: leftovers after a refusal or a stop ----------------------------------------------------------------


def test_plot_onto_a_file_size_limit_leaves_no_figure_and_no_temporary(real_run, tmp_path):
    import resource
    import shutil

    run_dir = tmp_path / "r"
    shutil.copytree(real_run, run_dir)

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))  # below a figure's size

    proc = subprocess.run(
        [sys.executable, "-m", "amsgrad_repro", "plot", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 2 and "File too large" in proc.stderr, proc.stderr
    assert not [p.name for p in run_dir.iterdir() if "figure" in p.name or p.name.endswith(".tmp")]


def test_a_signal_between_phase_claiming_its_directory_and_running_keeps_nothing(tmp_path, monkeypatch):
    from amsgrad_repro.synthetic import fused

    def interrupted(*args, **kwargs):  # where the signal lands: after "writing to", before the grid
        raise KeyboardInterrupt

    monkeypatch.setattr(fused, "kernel_cached", interrupted)
    argv = ["phase", "--steps", "50", "--beta1", "0", "0.5", "2", "--beta2", "0.5", "0.9", "2", "--run-name", "p"]
    assert main([*argv, "--logdir", str(tmp_path), "--no-progress"]) == 130
    assert not (tmp_path / "phase").exists()  # the name is free again, and no parent is left


def test_a_second_signal_after_the_runs_end_waits_for_the_summary(tmp_path):
    with handle_signals():
        run_dir = RunDir.claim(tmp_path / "online", "r", overwrite=False, logdir=str(tmp_path))
        ledger = Ledger([{"name": "a"}, {"name": "b"}])
        with Stopping(ledger, run_dir) as stop:
            ledger.update("a", "running")
            ledger.update("a", "complete")
            ledger.update("b", "running")
            raise KeyboardInterrupt  # the first SIGTERM
        os.kill(os.getpid(), signal.SIGTERM)  # the second, before the summary is written: it must wait
        final, kept = stop.finish({"runs": ledger.rows(), **ledger.outcome()}, keep=True)
    summary = json.loads((final / "summary.json").read_text())
    assert kept and summary["runs_by_status"] == {"complete": 1, "interrupted": 1}


def test_two_sigterms_to_logreg_jobs_leave_a_summary_or_nothing(tmp_path, spawn):
    argv = ["logreg", "--iterations", "1000000", "--seed", "0:2", "--jobs", "2", "--log-every", "50"]
    proc = spawn(
        [sys.executable, "-m", "amsgrad_repro", *argv, "--logdir", str(tmp_path), "--run-name", "r", "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"},
    )
    try:
        for line in proc.stdout:  # the event: the workers are being started
            if "worker processes" in line:
                break
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGTERM)  # the second at once: the case that once left no summary
        assert proc.wait(timeout=300) == 143, proc.stderr.read()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    run_dir = tmp_path / "logreg" / "r"
    assert (run_dir / "summary.json").is_file() or not run_dir.exists()
    assert (
        not [p for p in (tmp_path / "logreg").iterdir() if p.name.startswith(".")] if run_dir.parent.exists() else True
    )


@pytest.mark.parametrize(
    "argv, says",
    [
        (["phase", "--beta1", "0", "0.9", "10000", "--beta2", "0.5", "0.99", "10000", "--allow-large"], "GB of memory"),
        (["stochastic", "--seed", "0:400000", "--allow-large"], "even with --allow-large"),
        (["logreg", "--seed", "0:100000", "--lr", "1e-3", "1e-2", "1e-1", "--allow-large"], "even with --allow-large"),
    ],
    ids=["phase 1e8 cells", "stochastic 800k runs", "logreg 600k runs"],
)
def test_sizes_past_what_fits_are_refused_before_anything_is_allocated(tmp_path, argv, says, capsys):
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert says in _one_line(capsys, main([*argv, "--logdir", str(tmp_path)]))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB
    assert not any(tmp_path.iterdir())


def test_the_volume_estimate_counts_each_runs_files():
    from amsgrad_repro.report import BYTES_PER_RUN, check_volume

    assert "about 12.3 MB" in check_volume(runs=1000, scalars=0, allow_large=False)
    with pytest.raises(Exception, match="--allow-large"):  # 10,000 runs of few points: 123 MB, not ~0
        check_volume(runs=9_000, scalars=20_000_000, allow_large=False)
    assert BYTES_PER_RUN == 12_288


# --- class 6: one line of at most 300 characters ----------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["online", "--optimizers", "adam,lr=" + "9" * 400],
        ["online", "--lr", "x" * 400],
        ["online", "--run-name", "é" * 400],
        ["logreg", "--data-dir", "/nonexistent/" + "d" * 400],
        ["plot", "/nonexistent/" + "d" * 400],
        ["online", "--no-such-flag-" + "x" * 400],
    ],
    ids=["spec", "argparse value", "run name", "data dir", "plot", "argparse flag"],
)
def test_an_error_line_is_at_most_300_characters_whole(tmp_path, argv, capsys):
    try:
        code = main([*argv, "--logdir", str(tmp_path)] if argv[0] != "plot" else argv)
    except SystemExit as e:  # argparse's own errors exit through SystemExit
        code = e.code
    err = _one_line(capsys, code)
    assert len(err) <= MAX_LINE and err.startswith("amsgrad-repro") and err.endswith(("…", "(see --help)")), err
