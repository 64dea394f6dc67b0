"""A write error (a full disk, a file-size limit) ends the invocation at once, says so in one line, and loses
nothing: an old run stays as it was, no hidden staging directory is left, and the name is free for a later run.

Usage::

    pytest tests/test_write_errors.py

Two kinds of real write error, no mocks in the command-line tests:

- **EFBIG** from ``RLIMIT_FSIZE``: the command runs in a child process whose files may not grow past a limit
  (SIGXFSZ ignored, so the write fails instead of killing the process). Any machine, no privileges.
- **ENOSPC** from a 2 MB tmpfs, where the test may mount one (root on Linux); skipped elsewhere.

The timeouts below only catch a hang (the bug these tests guard: the old writer thread died and the process
waited for ever); they are minutes, far above the seconds these commands take on a busy machine.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from amsgrad_repro.events import EventWriter
from amsgrad_repro.runs import Ledger, RunDir, Stopping, WriteFailed, write_summary

ROOT = Path(__file__).resolve().parents[1]
HANG = 600  # seconds: a hang, not a slow machine


def _limit_file_size(limit: int):
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def cli(args: list[str], cwd: Path, file_limit: int | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "amsgrad_repro", *args, "--no-progress"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG,
        preexec_fn=None if file_limit is None else _limit_file_size(file_limit),
    )


def _one_error_line(result: subprocess.CompletedProcess, cause: str) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.returncode == 1, result.stdout + result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("amsgrad-repro: error: cannot write "), lines[0]
    assert lines[0].endswith(cause), lines[0]
    return lines[0]


def _hidden(base: Path) -> list[str]:
    return sorted(p.name for p in base.iterdir() if p.name.startswith(".")) if base.exists() else []


#: (command, where its run directory goes): each writes far more than 200 kB into one events file
BIG = [
    (["online", "--steps", "300000", "--log-every", "1", "--allow-large"], "online"),
    (["stochastic", "--engine", "trial", "--steps", "20000", "--log-every", "1"], "stochastic"),
    (["logreg", "--iterations", "2000", "--log-every", "1", "--eval-every", "1"], "logreg"),
]


@pytest.mark.parametrize(("args", "setting"), BIG, ids=[a[0][0] + "-" + a[0][2] for a in BIG])
def test_a_file_size_limit_ends_the_run_with_one_line_and_keeps_the_name_free(tmp_path, args, setting):
    result = cli([*args, "--run-name", "r"], tmp_path, file_limit=200_000)
    line = _one_error_line(result, "File too large")
    assert "/events.out.tfevents." in line  # the file, named
    base = tmp_path / "logs" / setting
    assert _hidden(base) == []
    run = base / "r"
    if run.exists():  # kept only with a summary that says what happened
        summary = json.loads((run / "summary.json").read_text())
        assert summary["error"] in line
        assert "failed" in summary["runs_by_status"]
        assert not (run / ".summary.json.tmp").exists()
    else:  # or nothing at all, so the name is free without --overwrite
        assert not base.exists() or list(base.iterdir()) == []


def test_overwrite_onto_a_file_size_limit_leaves_the_old_run_as_it_was(tmp_path):
    first = cli(["online", "--steps", "3000", "--run-name", "r"], tmp_path)
    assert first.returncode == 0, first.stderr
    run = tmp_path / "logs" / "online" / "r"
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".lock"}
    result = cli(
        ["online", "--steps", "300000", "--log-every", "1", "--allow-large", "--run-name", "r", "--overwrite"],
        tmp_path,
        file_limit=200_000,
    )
    _one_error_line(result, "File too large")
    after = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".lock"}
    assert after == before
    assert _hidden(run.parent) == []
    again = cli(["online", "--steps", "3000", "--run-name", "r", "--overwrite"], tmp_path)  # the name is not blocked
    assert again.returncode == 0, again.stderr


def test_phase_onto_a_file_size_limit_writes_nothing(tmp_path):
    result = cli(["phase", "--steps", "500", "--run-name", "p"], tmp_path, file_limit=20_000)
    line = _one_error_line(result, "File too large")
    assert "logs/phase/online/p/phase.csv" in line
    assert not (tmp_path / "logs" / "phase" / "online" / "p").exists()
    assert _hidden(tmp_path / "logs" / "phase" / "online") == []


@pytest.fixture
def small_fs(tmp_path):
    """A 2 MB tmpfs, where this process may mount one; else the test is skipped (the EFBIG tests still run)."""
    mnt = tmp_path / f"tiny-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root on Linux")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.parametrize("args", [a for a, _ in BIG] + [["phase", "--steps", "500"]], ids=lambda a: a[0])
def test_a_full_disk_ends_the_run_with_one_line(tmp_path, small_fs, args):
    filler = small_fs / "filler"
    filler.write_bytes(b"\0" * 1_900_000)  # leave ~100 kB: the run directory fits, its events do not
    result = cli([*args, "--run-name", "r", "--logdir", str(small_fs / "logs")], tmp_path)
    _one_error_line(result, "No space left on device")
    for base in (small_fs / "logs").rglob("*"):
        assert not base.name.startswith(".new") and ".new-" not in base.name, base


# --- the pieces, with an injected error -------------------------------------------------------------------


class _FailingFile:
    """A file whose writes fail with ``errno`` after ``room`` bytes, as a full disk does."""

    def __init__(self, room: int, code: int = errno.ENOSPC) -> None:
        self.room, self.code, self.closed = room, code, False

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(self.code, os.strerror(self.code))
        self.room -= len(data)
        return len(data)

    def close(self) -> None:
        self.closed = True


def test_the_event_writer_raises_at_once_names_the_file_and_stays_failed(tmp_path):
    writer = EventWriter(tmp_path / "run")
    failing = _FailingFile(room=0, code=errno.EIO)
    writer._file = failing
    writer.add_scalar("x", 1.0, 1)  # buffered: nothing written yet
    with pytest.raises(WriteFailed, match=r"cannot write .*events\.out\.tfevents\..*: Input/output error"):
        writer.flush()
    assert failing.closed
    with pytest.raises(WriteFailed):  # the same error again, never a hang or a silent drop
        writer.add_scalars("x", [1.0] * 10, range(10))
        writer.flush()
    writer.close()  # after the error: only closes


def test_a_summary_that_does_not_fit_keeps_nothing_and_leaves_no_temporary(tmp_path, monkeypatch):
    run_dir = RunDir.claim(tmp_path / "online", "r", overwrite=False, logdir=str(tmp_path))
    ledger = Ledger([{"name": "adam"}, {"name": "amsgrad"}])
    with Stopping(ledger, run_dir) as stop:
        ledger.update("adam", "running")
        ledger.update("adam", "complete")
        ledger.update("amsgrad", "running")
        raise WriteFailed(run_dir.path / "amsgrad" / "events", OSError(errno.ENOSPC, "No space left on device"))
    rows = {r["name"]: r for r in ledger.rows()}
    assert rows["adam"]["status"] == "complete"
    assert rows["amsgrad"]["status"] == "failed" and "No space left" in rows["amsgrad"]["error"]

    real_fdopen = os.fdopen

    class Full:  # a file on a full disk: every write fails
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: Full(real_fdopen(fd, *a, **k)))
    final, kept = stop.finish({"runs": ledger.rows(), **ledger.outcome()}, keep=True)
    assert not kept and not final.exists()
    assert not final.parent.exists()  # nothing left (the parents it made, a temporary summary)
    with pytest.raises(WriteFailed, match="No space left"):
        stop.raise_error()


def test_write_summary_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(errno.EFBIG, "File too large")))
    with pytest.raises(WriteFailed, match=r"summary\.json: File too large"):
        write_summary(tmp_path, {"a": 1})
    assert list(tmp_path.iterdir()) == []
