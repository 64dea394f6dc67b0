"""Shared fixtures. Helpers are fixtures (not an importable module) because torchbearer's wheel installs a
top-level ``tests`` package that would shadow ours."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch


def _plain_loop(problem, make_optimizer, steps: int):
    """The reference: a plain torch loop, written here without torchbearer. Returns (x_{t+1}, R_t/t) per step,
    with x clamped onto F after every step and R_t summed in float64 from the point played."""
    opt = make_optimizer(problem.parameters())
    lo, hi = problem.bounds.lo, problem.bounds.hi
    x_star = problem.x_star
    xs = np.empty(steps, np.float64)
    avg = np.empty(steps, np.float64)
    total = 0.0
    for t in range(1, steps + 1):
        played = problem.x.item()
        opt.zero_grad()
        loss = problem(t)
        loss.backward()
        opt.step()
        with torch.no_grad():
            problem.x.clamp_(lo, hi)
        total += problem.coef(t) * (played - x_star)
        xs[t - 1] = problem.x.item()
        avg[t - 1] = total / t
    return xs, avg


@pytest.fixture
def plain_loop():
    return _plain_loop


def _trial_trajectory(problem, optimizer, steps: int):
    """Run ``build_trial`` and keep the metrics of every step: (x_{t+1} as float32, R_t/t)."""
    import torchbearer

    from amsgrad_repro.synthetic.trial import build_trial

    xs, avg = [], []

    class Recorder(torchbearer.Callback):
        def on_step_training(self, state):
            xs.append(state[torchbearer.METRICS]["x"])
            avg.append(state[torchbearer.METRICS]["average_regret"])

    build_trial(problem, optimizer, steps, callbacks=[Recorder()]).run()
    return np.array(xs), np.array(avg)


@pytest.fixture
def trial_trajectory():
    return _trial_trajectory


@pytest.fixture
def run_cli():
    """Run ``python -m amsgrad_repro ARGS`` in a subprocess; returns CompletedProcess (text)."""

    def run(args, cwd=None, timeout=300):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        return subprocess.run(
            [sys.executable, "-m", "amsgrad_repro", *map(str, args)],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )

    return run


def _read_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag of one TensorBoard run directory, read with TensorBoard's own event accumulator."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.fixture
def read_scalars():
    return _read_scalars


@pytest.fixture
def read_summary():
    def read(run_dir: Path) -> dict:
        return json.loads((Path(run_dir) / "summary.json").read_text())

    return read


@pytest.fixture(scope="session")
def tiny_cifar(tmp_path_factory):
    """A CIFAR-10 python directory in the real format (protocol-2 pickles of dicts with bytes keys): five training
    batches and a test batch of 8 random 3×32×32 images each."""
    import pickle

    root = tmp_path_factory.mktemp("cifar")
    d = root / "cifar-10-batches-py"
    d.mkdir()
    rng = np.random.default_rng(1)
    for name in [*(f"data_batch_{k}" for k in range(1, 6)), "test_batch"]:
        batch = {b"data": rng.integers(0, 256, (8, 3072), dtype=np.uint8), b"labels": rng.integers(0, 10, 8).tolist()}
        (d / name).write_bytes(pickle.dumps(batch, protocol=2))
    return root


@pytest.fixture(scope="session")
def ray_lock(tmp_path_factory):
    """``with ray_lock():`` around anything that starts or stops Ray. The suite runs on several pytest-xdist
    workers, and Ray is machine-wide: ``ray stop --force`` and a killed ``ray::`` worker in one test would hit
    another test's Ray. One file lock, shared by every worker of this pytest run, lets one Ray user in at a time."""
    path = tmp_path_factory.getbasetemp().parent / "ray.lock"  # the workers' common pytest directory

    @contextlib.contextmanager
    def hold():
        with open(path, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    return hold


@pytest.fixture
def spawn():
    """``subprocess.Popen`` in a session (a process group) of its own, the group killed when the test ends, pass or
    fail: no process a test starts, nor any that one starts (workers, a forkserver, a Ray driver), outlives it."""
    started: list[subprocess.Popen] = []

    def start(*args, **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(*args, start_new_session=True, **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # the leader may be gone and its workers not
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=60)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (0 if it is gone): an event a test can wait for when
    a process writes nothing it can see (it has computed that long)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


@pytest.fixture
def cpu_seconds():
    return _cpu_seconds


def _wait_for_bar(proc: subprocess.Popen, found: Callable[[str], bool], guard: float) -> Callable[[], str]:
    """Read ``proc``'s stderr (a text pipe; its progress bar with ``--progress``) until ``found`` is true of the
    last 4 KB read: an event a test can wait for in place of a time; ``guard`` seconds is a hang guard only. The
    rest goes on being read in a thread, so the process never blocks on a full pipe; the function returned waits
    for the end of stderr and returns all of it."""
    seen, ended, chunks = threading.Event(), threading.Event(), []

    def read() -> None:
        text = ""
        while chunk := proc.stderr.read(256):
            chunks.append(chunk)
            text = (text + chunk)[-4096:]
            if not seen.is_set() and found(text):
                seen.set()
        ended.set()  # stderr closed: the process is gone, nothing more will show

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + guard
    while not seen.wait(0.2) and not ended.is_set() and time.monotonic() < deadline:
        pass
    assert seen.is_set(), (
        f"the bar did not show what was waited for ({'it ended' if ended.is_set() else 'hang guard'}):\n"
        + "".join(chunks)[-2000:]
    )

    def everything() -> str:
        reader.join(timeout=300)
        return "".join(chunks)

    return everything


@pytest.fixture
def wait_for_bar():
    return _wait_for_bar
