"""A lost Ray node: a two-node cluster on this machine (``ray start --head`` with one CPU, and a second ``ray start
--address`` with its own CPU), a grid whose tasks land on both, and the second node's raylet killed mid-task.

Slow (about a minute and a half: Ray takes some 30 s to declare the node dead), so outside the default suite:
``pytest -m slow tests/test_ray_nodes.py``.
"""

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

from amsgrad_repro.synthetic.engines import ray_chunk

pytest.importorskip("ray")

pytestmark = pytest.mark.slow

# workers at normal priority (Ray's default, nice 15, starves them beside other jobs; see test_ray_cluster.py)
ENV = os.environ | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "RAY_worker_niceness": "0"}
RAY = shutil.which("ray", path=os.path.dirname(sys.executable))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes() -> dict[int, tuple[int, bytes]]:
    """pid → (parent pid, command line) of every process now."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            state, ppid = stat.rsplit(")", 1)[1].split()[:2]
            if state != "Z":  # a zombie has ended; only its parent has not read its status yet
                found[int(entry.name)] = (int(ppid), (entry / "cmdline").read_bytes())
        except (OSError, ValueError):
            continue
    return found


def _raylets() -> set[int]:
    return {pid for pid, (_, cmd) in _processes().items() if b"/raylet/raylet" in cmd.split(b"\0")[0]}


@pytest.fixture(scope="module")
def two_nodes(ray_lock):
    """(address, pid of the second node's raylet): a head with 1 CPU and a second node with 1 CPU, stopped at the
    end of the module (``ray stop`` stops every node on the machine, hence the suite's Ray lock)."""
    port = _free_port()
    with ray_lock():
        before = _raylets()
        head = [RAY, "start", "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false"]
        subprocess.run([*head, "--disable-usage-stats"], check=True, capture_output=True, timeout=180, env=ENV)
        try:
            head_raylets = _raylets() - before
            second = [RAY, "start", f"--address=127.0.0.1:{port}", "--num-cpus=1"]
            subprocess.run(second, check=True, capture_output=True, timeout=180, env=ENV)
            (raylet,) = _raylets() - before - head_raylets
            yield f"127.0.0.1:{port}", raylet
        finally:
            subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120, env=ENV)


def _cli(spawn, args) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "amsgrad_repro", *map(str, args), "--no-progress"]
    return spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def _tasks_on(raylet: int) -> list[int]:
    """Workers of ``raylet`` now running our fused task (Ray titles them ``ray::fused_task``)."""
    return [pid for pid, (ppid, cmd) in _processes().items() if ppid == raylet and cmd.startswith(b"ray::fused_task")]


def _finals(summary: dict) -> list:
    return [(r["name"], r["status"], r["final_x"], r["average_regret"], r["steps_done"]) for r in summary["runs"]]


def test_a_lost_node_s_tasks_are_retried_elsewhere_and_change_nothing(two_nodes, tmp_path, read_summary, read_scalars,
                                                                       spawn):  # fmt: skip
    address, raylet = two_nodes
    # 8 runs of 2e8 steps in tasks of ray_chunk's size (2 runs here, a few seconds on one core): both nodes get tasks
    tasks = -(-8 // ray_chunk(8, 2, int(2e8), int(2e8 // 1e7) + 1))
    argv = ["stochastic", "--seed", "0:4", "--steps", "2e8", "--log-every", "1e7", "--logdir", tmp_path]
    proc = _cli(spawn, [*argv, "--run-name", "lost-node", "--ray", address])
    deadline, workers = time.monotonic() + 900, []  # a hang guard only: a busy machine is slow
    while not workers and time.monotonic() < deadline and proc.poll() is None:
        workers = _tasks_on(raylet)
        time.sleep(0.05)
    assert workers, f"no task ever ran on the second node (exit {proc.poll()})"
    time.sleep(0.5)  # well inside the task
    os.kill(raylet, signal.SIGKILL)
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err
    assert "Traceback" not in err

    summary = read_summary(tmp_path / "stochastic/lost-node")
    assert summary["status"] == "complete" and summary["runs_by_status"] == {"complete": 8}
    nodes = summary["config"]["ray_nodes"]
    assert len(nodes["nodes_seen"]) == 2 and len(nodes["nodes_lost"]) == 1
    (lost,) = nodes["nodes_lost"]
    assert lost not in nodes["results_by_node"]  # its task never returned from it: the other node ran it again
    assert sum(nodes["results_by_node"].values()) == tasks  # a result per task, each from a live node
    assert f"Ray: lost 1 of 2 node(s) while running ({lost})" in out

    # nothing left running: the dead node's workers are gone, and no task of ours runs anywhere
    stop = time.monotonic() + 60
    while any(pid in _processes() for pid in workers) and time.monotonic() < stop:
        time.sleep(0.2)
    assert not any(pid in _processes() for pid in workers)
    assert not [pid for pid, (_, cmd) in _processes().items() if cmd.startswith(b"ray::fused_task")]

    # the same numbers as in this process, run for run and scalar for scalar
    here = _cli(spawn, [*argv, "--run-name", "here"])
    _, err = here.communicate(timeout=900)
    assert here.returncode == 0, err
    there = summary
    here = read_summary(tmp_path / "stochastic/here")
    assert _finals(here) == _finals(there)
    for r in here["runs"]:
        assert read_scalars(tmp_path / "stochastic/here" / r["name"]) == read_scalars(
            tmp_path / "stochastic/lost-node" / r["name"]
        )
