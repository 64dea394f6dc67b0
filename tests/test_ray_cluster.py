"""--ray ADDRESS against a separately started single-node cluster (`ray start --head`, once for this module): joining
by address, a worker killed mid-task (retried, same numbers), Ctrl-C and SIGTERM on the driver."""

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: the cluster and every driver share a token, as a secured cluster does (Ray ≥ 2.52 turns token authentication on
#: by itself once ~/.ray/auth_token exists, so the tests set it either way rather than depend on that file)
# RAY_worker_niceness=0: Ray starts workers at nice 15, where beside other jobs (a busy CI machine) they get a few
# per cent of a core; the tests' clusters give them normal priority, as a local --ray instance does
ENV = os.environ | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "RAY_worker_niceness": "0"}


@pytest.fixture(scope="module")
def address(ray_lock):
    """A head node on a free port with 2 CPUs, stopped (with its workers) at the end of the module. The module
    holds the suite's Ray lock throughout: its tests kill Ray workers and stop every Ray on the machine."""
    ray_bin = shutil.which("ray", path=os.path.dirname(sys.executable))
    port = _free_port()
    start = [ray_bin, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false"]
    with ray_lock():
        subprocess.run([*start, "--disable-usage-stats"], check=True, capture_output=True, timeout=180, env=ENV)
        try:
            yield f"127.0.0.1:{port}"
        finally:
            subprocess.run([ray_bin, "stop", "--force"], capture_output=True, timeout=120, env=ENV)


def _cli(spawn, args):
    cmd = [sys.executable, "-m", "amsgrad_repro", *map(str, args), "--no-progress"]
    return spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def _task_pids(name: str) -> list[int]:
    """Ray worker processes now running a task of ``name`` (Ray titles them ``ray::<name>``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(f"ray::{name}".encode()):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _finals(summary: dict) -> list:
    return [(r["name"], r["status"], r["final_x"], r["average_regret"], r["steps_done"]) for r in summary["runs"]]


def test_join_by_address_equals_in_process(address, tmp_path, read_summary, read_scalars, spawn):
    argv = ["stochastic", "--seed", "0:4", "--steps", "100000", "--log-every", "10000", "--logdir", tmp_path]
    for name, extra in (("here", []), ("ray", ["--ray", address])):
        proc = _cli(spawn, [*argv, "--run-name", name, *extra])
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    assert f"({address}): 1 node(s), 2 CPU" in out
    here, there = read_summary(tmp_path / "stochastic/here"), read_summary(tmp_path / "stochastic/ray")
    assert _finals(here) == _finals(there) and there["config"]["ray"] == address
    for r in here["runs"]:
        assert read_scalars(tmp_path / "stochastic/here" / r["name"]) == read_scalars(
            tmp_path / "stochastic/ray" / r["name"]
        )


def test_a_killed_worker_is_retried_and_nothing_is_lost(address, tmp_path, read_summary, spawn):
    # two runs of 2e8 steps: one task each, a few seconds long; the first attempt of one is killed
    argv = ["online", "--steps", "2e8", "--log-every", "1e7", "--logdir", tmp_path]
    proc = _cli(spawn, [*argv, "--run-name", "ray", "--ray", address])
    deadline, killed = time.monotonic() + 120, None
    while killed is None and time.monotonic() < deadline and proc.poll() is None:
        pids = _task_pids("fused_task")
        if pids:
            time.sleep(0.5)  # well inside the task
            os.kill(pids[0], signal.SIGKILL)
            killed = pids[0]
        time.sleep(0.05)
    _, err = proc.communicate(timeout=300)
    assert killed is not None, "never saw a running task to kill"
    assert proc.returncode == 0, err
    there = read_summary(tmp_path / "online/ray")
    assert there["status"] == "complete" and there["runs_by_status"] == {"complete": 2}
    here_proc = _cli(spawn, [*argv, "--run-name", "here"])
    here_proc.communicate(timeout=300)
    assert here_proc.returncode == 0
    assert _finals(read_summary(tmp_path / "online/here")) == _finals(there)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_stopping_the_driver_keeps_what_finished(address, tmp_path, read_summary, read_scalars, signum, code, spawn):
    # 12 runs in tasks of 2 (about a second each on one core): stop once the first results are written
    argv = ["stochastic", "--seed", "0:6", "--steps", "1e8", "--log-every", "1e7", "--logdir", tmp_path]
    proc = _cli(spawn, [*argv, "--run-name", "cut", "--ray", address])
    run_dir, deadline = None, time.monotonic() + 900  # a hang guard only: a busy machine is slow
    while time.monotonic() < deadline and proc.poll() is None:
        found = list(tmp_path.glob("stochastic/*/*/seed=*/events.out.tfevents.*"))
        if found:
            run_dir = found[0].parent.parent.parent
            break
        time.sleep(0.05)
    assert run_dir is not None, f"no run finished (exit {proc.poll()}): {proc.stderr.read() if proc.poll() else ''}"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    summary = read_summary(tmp_path / "stochastic/cut")
    statuses = {r["status"] for r in summary["runs"]}
    assert summary["interrupted"] and summary["stopped_by"] == signal.Signals(signum).name
    assert "complete" in statuses and statuses <= {"complete", "not started"}
    for r in summary["runs"]:
        events = read_scalars(tmp_path / "stochastic/cut" / r["name"]) if r["status"] == "complete" else None
        if events is not None:
            assert events["x"][-1][0] == 10**8  # readable, and complete to the last step
    deadline = time.monotonic() + 30
    while _task_pids("fused_task") and time.monotonic() < deadline:  # cancelled with force: killed shortly
        time.sleep(0.2)
    assert not _task_pids("fused_task")  # nothing left running on the cluster


def test_a_lost_cluster_is_an_error_after_the_timeout_and_keeps_what_finished(address, tmp_path, read_summary, spawn):
    """Last in this module: it stops the module's cluster under the driver's feet."""
    argv = ["stochastic", "--seed", "0:10", "--steps", "2e8", "--log-every", "1e7", "--logdir", tmp_path]
    proc = _cli(spawn, [*argv, "--run-name", "lost", "--ray", address, "--ray-timeout", "10"])
    deadline = time.monotonic() + 900  # a hang guard only
    while not list(tmp_path.glob("stochastic/lost/*/seed=*/events.out.tfevents.*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # let the driver record that first result
    ray_bin = shutil.which("ray", path=os.path.dirname(sys.executable))
    subprocess.run([ray_bin, "stop", "--force"], capture_output=True, timeout=120, env=ENV)
    stopped = time.monotonic()
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 1, err
    assert "has had no live node for 10 s" in err and "--ray-timeout" in err
    # the flag's 10 s, not the default 120 s: generous for a busy machine, still below what the default would take
    assert time.monotonic() - stopped < 110
    summary = read_summary(tmp_path / "stochastic/lost")
    assert summary["interrupted"] and summary["runs_by_status"].get("complete", 0) >= 1
    assert set(summary["runs_by_status"]) <= {"complete", "not started"}
