"""TensorBoard shows the paper: a real TensorBoard, started on run directories the CLI wrote, serves each
invocation's Custom Scalars layout and every run of a grid in its HParams dashboard, read over its HTTP API.

Usage::

    pytest tests/test_dashboards.py

One TensorBoard for the module (``--load_fast false``: the pure-Python reader, which every install has). The
timeout for it to come up only catches a server that never answers; a busy machine just takes longer.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from amsgrad_repro.cli import main
from amsgrad_repro.dashboards import write_sessions
from amsgrad_repro.events import EventWriter

TENSORBOARD = shutil.which("tensorboard", path=str(Path(sys.executable).parent))
pytestmark = pytest.mark.skipif(TENSORBOARD is None, reason="the tensorboard command is not installed")

#: 2 optimizers × 2 step sizes × 2 seeds (stochastic) and × 2 β2 (mlp): two 2 × 2 × 2 grids
SYNTHETIC = ["stochastic", "--steps", "3000", "--optimizers", "adam", "amsgrad", "--lr", "1e-3", "1e-2",
             "--seed", "0", "1", "--run-name", "grid"]  # fmt: skip
REAL = ["mlp", "--iterations", "20", "--log-every", "5", "--eval-every", "10", "--optimizers", "adam", "amsgrad",
        "--lr", "1e-3", "1e-2", "--beta2", "0.99", "0.999", "--run-name", "grid"]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(logdir, base URL): the two grids written by the CLI, plus an online run, under one TensorBoard."""
    logdir = tmp_path_factory.mktemp("tb") / "logs"
    for argv in (SYNTHETIC, REAL, ["online", "--steps", "3000", "--run-name", "paper"]):
        assert main([*argv, "--logdir", str(logdir), "--no-progress"]) == 0
    _runs_with_every_status(logdir / "statuses")
    port = _free_port()
    server = subprocess.Popen(
        [TENSORBOARD, "--logdir", str(logdir), "--host", "127.0.0.1", "--port", str(port), "--load_fast", "false"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its group is killed at the end, whatever it started
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                runs = _get(base, "/data/runs")
                if any(r.startswith("mlp/grid/") for r in runs) and any(r.startswith("statuses/") for r in runs):
                    break
            except OSError:
                pass
            assert server.poll() is None, server.stderr.read().decode()
            assert time.monotonic() < deadline, "TensorBoard did not come up"
            time.sleep(0.5)
        yield logdir, base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=60)
        server.stderr.close()


def _get(base: str, path: str):
    with urllib.request.urlopen(base + path, timeout=60) as r:
        return json.loads(r.read())


def _post(base: str, path: str, body: dict):
    request = urllib.request.Request(
        base + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as r:
        return json.loads(r.read())


def _runs_with_every_status(root: Path) -> None:
    """A hand-made invocation whose runs ended complete, interrupted and failed (and one never started)."""
    rows = []
    for k, status in enumerate(["complete", "interrupted", "failed", "not started"]):
        rows.append({"name": f"run{k}", "status": status, "optimizer": "adam", "seconds": 1.0})
        if status != "not started":
            with EventWriter(root / f"run{k}") as w:
                w.add_scalar("x", 0.5, 10)
    write_sessions(root, rows, lambda row: {"optimizer": row["optimizer"]}, "statuses")


def test_every_invocation_has_its_own_figure_layout(served):
    _, base = served
    layout = _get(base, "/data/plugin/custom_scalars/layout")
    categories = {c["title"]: c for c in layout["category"]}
    assert set(categories) == {
        "Figure 1 (stochastic): stochastic/grid",
        "Figure 2 (mlp): mlp/grid",
        "Figure 1 (online): online/paper",
    }
    charts = {c["title"]: c["multiline"]["tag"] for cat in categories.values() for c in cat["chart"]}
    assert charts["Figure 1, left: R_t/t, online"] == ["^average_regret$"]
    assert charts["Figure 1, centre: x_t, online"] == ["^x$"]
    assert charts["Figure 1, right: x_t, stochastic"] == ["^x$"]
    assert charts["Figure 2, top right: one-hidden-layer network, training loss"] == ["^train_loss$"]
    # every chart's regexes match tags that the runs of its invocation really have
    tags = _get(base, "/data/plugin/scalars/tags")
    for title, category in categories.items():
        prefix = title.split(": ", 1)[1] + "/"
        run_tags = set(itertools.chain.from_iterable(t for r, t in tags.items() if r.startswith(prefix)))
        for chart in category["chart"]:
            for regex in chart["multiline"]["tag"]:
                assert any(re.search(regex, tag) for tag in run_tags), (title, chart["title"], regex)


def _session_groups(base: str) -> list[dict]:
    body = {
        "experimentName": "",
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
        "colParams": [],
        "startIndex": 0,
        "sliceSize": 1000,
    }
    return _post(base, "/data/plugin/hparams/session_groups", body)["sessionGroups"]


@pytest.mark.parametrize(
    ("directory", "swept", "metrics"),
    [
        ("stochastic/grid", ("optimizer", "lr", "seed"), {"x": "final_x", "average_regret": "average_regret"}),
        (
            "mlp/grid",
            ("optimizer", "lr", "beta2"),
            {"train_loss": "final_train_loss", "test_loss": "final_test_loss", "test_accuracy": "final_test_accuracy"},
        ),
    ],
)
def test_every_run_of_a_grid_is_an_hparams_session_with_summary_json_numbers(served, directory, swept, metrics):
    logdir, base = served
    experiment = _post(base, "/data/plugin/hparams/experiment", {"experimentName": ""})
    names = {h["name"] for h in experiment["hparamInfos"]}
    assert {"optimizer", "lr", "beta1", "beta2", "eps", "seed", "status", "lr_schedule"} <= names
    assert set(metrics) <= {m["name"]["tag"] for m in experiment["metricInfos"]}
    summary = json.loads((logdir / directory / "summary.json").read_text())
    groups = {g["name"]: g for g in _session_groups(base)}
    assert len(summary["runs"]) == 8
    for row in summary["runs"]:
        group = groups[f"{directory}/{row['name']}"]
        (session,) = group["sessions"]
        assert session["name"] == f"{directory}/{row['name']}"
        assert session["status"] == "STATUS_SUCCESS"
        hp = group["hparams"]
        assert hp["status"] == "complete"
        assert hp["optimizer"] == row["optimizer"]
        for key in swept[1:]:
            assert hp[key] == pytest.approx(row[key]), key
        values = {m["name"]["tag"]: m["value"] for m in group["metricValues"]}
        for tag, field in metrics.items():
            # TensorBoard keeps scalars as float32; summary.json keeps the float64 of the same number
            assert values[tag] == pytest.approx(row[field], rel=1e-6, abs=1e-7), (row["name"], tag)


def test_interrupted_and_failed_runs_show_their_status(served):
    _, base = served
    groups = {g["name"]: g for g in _session_groups(base) if g["name"].startswith("statuses/")}
    assert set(groups) == {"statuses/run0", "statuses/run1", "statuses/run2"}  # "not started" ran nothing
    expected = {"run0": ("complete", "STATUS_SUCCESS"), "run1": ("interrupted", "STATUS_UNKNOWN"),
                "run2": ("failed", "STATUS_FAILURE")}  # fmt: skip
    for name, (status, session_status) in expected.items():
        group = groups[f"statuses/{name}"]
        assert group["hparams"]["status"] == status
        assert group["sessions"][0]["status"] == session_status
