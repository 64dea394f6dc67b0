"""The third hostile pass (issue 29), classes 1 and 2: nothing the package writes follows a link it did not make,
and nothing waits for ever on a file or a server that is not what it should be.

Usage::

    pytest tests/test_links_and_hangs.py

Every wait here is a hang guard (a subprocess timeout, a deadline on an event), never a speed limit.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from amsgrad_repro.cli import main
from amsgrad_repro.files import NotAFile, atomic_file, create_new, open_regular, read_regular, write_atomic

PRECIOUS = b"someone else's file\n"

#: each command that claims a run directory, at a size that takes a second or two
COMMANDS = {
    "online": ["online", "--steps", "300"],
    "phase": ["phase", "--steps", "300", "--beta1", "0", "0.9", "2", "--beta2", "0.9", "0.99", "2"],
    "logreg": ["logreg", "--iterations", "3", "--lr", "1e-3", "--jobs", "1", "--log-every", "1", "--eval-every", "3"],
}


def _run_dir(tmp_path: Path, command: str) -> Path:
    setting = {"phase": "phase/online"}.get(command, command)
    return tmp_path / "logs" / setting / "r"


def _argv(tmp_path: Path, command: str, *extra: str) -> list[str]:
    return [*COMMANDS[command], "--logdir", str(tmp_path / "logs"), "--run-name", "r", "--no-progress", *extra]


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("kind", ["symlink", "dangling symlink", "hard link", "fifo"])
def test_overwrite_never_writes_through_an_old_runs_lock(tmp_path, command, kind, capsys):
    assert main(_argv(tmp_path, command)) == 0
    run_dir = _run_dir(tmp_path, command)
    victim = tmp_path / "victim"
    victim.write_bytes(PRECIOUS)
    lock = run_dir / ".lock"
    lock.unlink()
    if kind == "symlink":
        lock.symlink_to(victim)
    elif kind == "dangling symlink":
        lock.symlink_to(tmp_path / "nowhere")
    elif kind == "hard link":
        os.link(victim, lock)
    else:
        os.mkfifo(lock)
    before = _snapshot(run_dir)
    capsys.readouterr()
    code = main(_argv(tmp_path, command, "--overwrite"))
    err = capsys.readouterr().err
    assert victim.read_bytes() == PRECIOUS and not (tmp_path / "nowhere").exists()
    if kind == "hard link":  # a regular file: taken over (locked, never written), and the old run replaced
        assert code == 0
    else:  # refused in one line, the old run exactly as it was
        assert code == 2 and len(err.strip().splitlines()) == 1 and ".lock" in err, err
        assert _snapshot(run_dir) == before
    assert not [p for p in run_dir.parent.iterdir() if p.name.startswith(".")]  # no staging directory left


@pytest.fixture(scope="module")
def online_run(tmp_path_factory) -> Path:
    logs = tmp_path_factory.mktemp("plot") / "logs"
    assert main(["online", "--steps", "300", "--logdir", str(logs), "--run-name", "r", "--no-progress"]) == 0
    return logs / "online" / "r"


@pytest.mark.parametrize("kind", ["symlink", "dangling symlink", "hard link"])
def test_plot_replaces_a_linked_figure_and_never_writes_through_it(online_run, tmp_path, kind):
    run_dir = tmp_path / "r"
    shutil.copytree(online_run, run_dir)
    victims = {}
    for ext in ("png", "svg"):
        figure, victim = run_dir / f"figure.{ext}", tmp_path / f"victim.{ext}"
        if kind == "dangling symlink":
            figure.symlink_to(victim)
        elif kind == "symlink":
            victim.write_bytes(PRECIOUS)
            figure.symlink_to(victim)
        else:
            victim.write_bytes(PRECIOUS)
            os.link(victim, figure)
        victims[ext] = victim
    assert main(["plot", str(run_dir)]) == 0
    for ext, victim in victims.items():
        figure = run_dir / f"figure.{ext}"
        assert not figure.is_symlink() and figure.stat().st_size > 1000
        if kind == "dangling symlink":
            assert not victim.exists()
        else:
            assert victim.read_bytes() == PRECIOUS
    assert sorted(p.name for p in run_dir.iterdir() if p.name.startswith(".")) == [".lock"]  # no temporary left


def test_files_never_write_through_a_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(PRECIOUS)
    link = tmp_path / "link"
    link.symlink_to(victim)
    with pytest.raises(FileExistsError):
        create_new(link)
    write_atomic(link, b"new")
    assert victim.read_bytes() == PRECIOUS and not link.is_symlink() and link.read_bytes() == b"new"
    with pytest.raises(ZeroDivisionError), atomic_file(tmp_path / "half") as f:  # an error mid-write
        f.write(b"half")
        raise ZeroDivisionError
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "victim"]  # nothing half-written, no temporary


def test_reads_refuse_what_is_not_a_regular_file_and_what_is_too_large(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(NotAFile, match="a FIFO"):
        read_regular(fifo, limit=100)  # O_NONBLOCK: the open itself does not wait for a writer
    with pytest.raises(NotAFile, match="a directory"):
        read_regular(tmp_path, limit=100)
    sparse = tmp_path / "sparse"
    with open(sparse, "wb") as f:
        f.truncate(5 << 30)  # 5 GiB that take no disk, and would fill memory if read
    link = tmp_path / "link"
    link.symlink_to(sparse)
    with pytest.raises(NotAFile, match="5,368,709,120 bytes"):
        read_regular(link, limit=1 << 20)
    with pytest.raises(NotAFile, match="symbolic link"):
        open_regular(link, limit=1 << 40, follow=False)


def _plot_in_child(run_cli, *args):
    """plot in a subprocess: a hang is a failed test after the guard, not a hung suite."""
    start = time.monotonic()
    proc = run_cli(["plot", *args], timeout=120)
    return proc, time.monotonic() - start


@pytest.mark.parametrize("what", ["events", "summary"])
def test_plot_refuses_a_fifo_instead_of_waiting_on_it(online_run, tmp_path, run_cli, what):
    run_dir = tmp_path / "r"
    shutil.copytree(online_run, run_dir)
    if what == "events":
        fifo = run_dir / "adam" / "events.out.tfevents.0000000000.host.1.fifo"
    else:
        fifo = run_dir / "summary.json"
        fifo.unlink()
    os.mkfifo(fifo)
    proc, _ = _plot_in_child(run_cli, run_dir)
    assert proc.returncode == 2 and "FIFO" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_plot_refuses_a_huge_summary_behind_a_link_in_one_line(online_run, tmp_path, run_cli):
    run_dir = tmp_path / "r"
    shutil.copytree(online_run, run_dir)
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as f:
        f.truncate(5 << 30)
    (run_dir / "summary.json").unlink()
    (run_dir / "summary.json").symlink_to(huge)
    proc, _ = _plot_in_child(run_cli, run_dir)
    assert proc.returncode == 2 and "bytes, more than" in proc.stderr and "Traceback" not in proc.stderr


class _Server:
    """A TCP server on a loopback port that is not Ray: it stays silent, or answers as an HTTP/1 server does."""

    def __init__(self, answer: bytes | None) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.answer, self.conns = answer, []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            if self.answer is not None:
                conn.recv(1024)
                conn.sendall(self.answer)

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.mark.parametrize(
    "answer, says",
    [(None, "did not answer as a Ray head"), (b"HTTP/1.1 400 Bad Request\r\n\r\n", "HTTP/1.1 400")],
    ids=["silent", "http"],
)
def test_ray_at_a_server_that_is_not_ray_is_one_line_not_a_hang(tmp_path, run_cli, answer, says):
    pytest.importorskip("ray")
    server = _Server(answer)
    try:
        argv = ["online", "--steps", "300", "--logdir", tmp_path, "--ray", f"127.0.0.1:{server.port}"]
        proc = run_cli([*argv, "--ray-timeout", "5"], timeout=120)
    finally:
        server.close()
    assert proc.returncode == 2 and says in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not any(tmp_path.iterdir())


def test_ctrl_c_stops_bench_in_a_huge_fused_timing(tmp_path, spawn):
    argv = ["bench", "--trial-steps", "10", "--fused-steps", "4e18", "--runs", "2", "--lane-runs", "8"]
    proc = spawn(
        [sys.executable, "-m", "amsgrad_repro", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    try:
        for line in proc.stdout:  # the event: the fused timing begins
            if "fused steps" in line:
                break
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=120)  # a hang guard: the kernel stops at its next window (~1 ms)
        assert code == 130, proc.stderr.read()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: the group is its pid
