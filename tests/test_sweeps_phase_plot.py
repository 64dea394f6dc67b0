"""Sweeps (lists of lr and seed), the (β1, β2) phase diagram, and the plot command."""

import csv
import json
import os
import re
import signal
import subprocess
import sys

import matplotlib
import numpy as np
import pytest

from amsgrad_repro.cli import main
from amsgrad_repro.plot import make_figure
from amsgrad_repro.synthetic.experiment import Config, ProblemConfig, run
from amsgrad_repro.synthetic.fused import FusedRun, simulate
from amsgrad_repro.synthetic.grid import beta1_grid, beta2_grid, run_grid
from amsgrad_repro.synthetic.problems import Online, Stochastic

matplotlib.use("Agg")


# --- sweeps ------------------------------------------------------------------------------------------------


def test_sweep_equals_runs_one_by_one(tmp_path, capsys, read_summary, read_scalars):
    argv = [
        "stochastic",
        "--steps",
        "20000",
        "--log-every",
        "5000",
        "--logdir",
        str(tmp_path),
        "--no-progress",
        "--optimizers",
        "adam",
        "amsgrad-paper",
        "sgd,lr=0.01",
        "--lr",
        "1e-3",
        "1e-2",
        "--seed",
        "0:3",
    ]
    assert main([*argv, "--run-name", "sweep"]) == 0
    out = capsys.readouterr().out
    summary = read_summary(tmp_path / "stochastic/sweep")
    names = [r["name"] for r in summary["runs"]]
    assert len(names) == (2 * 2 + 1) * 3  # sgd has its own lr, so it is not swept
    assert "adam/lr=0.001/seed=2" in names and "sgd,lr=0.01/seed=0" in names
    # the end-of-run table: mean ± sd across the three seeds per (optimizer, lr)
    assert "±" in out and "amsgrad-paper  0.01" in out.replace("   ", "  ")
    for r in summary["runs"]:
        alone = simulate(
            [Stochastic(seed=r["seed"])],
            [FusedRun.of(r["optimizer"], lr=r["lr"])],
            20_000,
        )
        assert alone.x[0] == pytest.approx(r["final_x"], abs=0, rel=0)
        assert alone.average_regret[0] == r["average_regret"]
        scalars = read_scalars(tmp_path / "stochastic/sweep" / r["name"])
        assert [s for s, _ in scalars["x"]] == [5000, 10000, 15000, 20000]


def test_sweep_table_statistics(tmp_path, capsys, read_summary):
    cfg = Config(
        ProblemConfig("stochastic"),
        steps=5000,
        optimizers=("adam",),
        seeds=(0, 1, 2, 3),
        logdir=str(tmp_path),
        run_name="stats",
        progress=False,
    )
    summary = run(cfg)
    out = capsys.readouterr().out
    xs = [r["final_x"] for r in summary["runs"]]
    assert f"{np.mean(xs):+.4f} ± {np.std(xs, ddof=1):.4f}" in out


def test_sweep_bad_input(tmp_path, capsys):
    for argv in (
        ["online", "--seed", "0", "1"],
        ["stochastic", "--lr", "1e-3", "1e-3"],
        ["stochastic", "--lr", "0:1:3"],
        ["stochastic", "--seed", "1", "1"],
    ):
        try:
            code = main([*argv, "--steps", "10", "--logdir", str(tmp_path / "x"), "--no-progress"])
        except SystemExit as e:
            code = e.code
        assert code == 2, argv
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


# --- phase -------------------------------------------------------------------------------------------------


def test_grids():
    assert beta1_grid(0.0, 0.9, 4).tolist() == pytest.approx([0.0, 0.3, 0.6, 0.9])
    b2 = beta2_grid(0.9, 0.999, 3)
    assert b2.tolist() == pytest.approx([0.9, 0.99, 0.999])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_phase_cells_equal_single_runs(dtype):
    b1, b2 = beta1_grid(0.0, 0.9, 3), beta2_grid(0.9, 0.999, 3)
    problem = ProblemConfig("online", dtype=dtype)
    final_x, regret, interrupted = run_grid(problem, ["adam", "amsgrad"], b1, b2, 5000, {"lr": 1e-2})
    assert not interrupted and final_x.shape == (2, 3, 3)
    for k, spec in enumerate(["adam", "amsgrad"]):
        for i, beta1 in enumerate(b1):
            for j, beta2 in enumerate(b2):
                run = FusedRun.of(spec, lr=1e-2, beta1=beta1, beta2=beta2)
                one = simulate([Online(dtype=dtype)], [run], 5000, dtype=dtype)
                assert final_x[k, i, j] == one.x[0]
                assert regret[k, i, j] == one.average_regret[0]


def test_phase_command_writes_csv_and_a_real_png(tmp_path, capsys):
    argv = [
        "phase",
        "--steps",
        "3000",
        "--beta1",
        "0",
        "0.9",
        "4",
        "--beta2",
        "0.5",
        "0.999",
        "5",
        "--optimizers",
        "adam",
        "amsgrad",
        "--logdir",
        str(tmp_path),
        "--run-name",
        "p",
        "--no-progress",
    ]
    assert main(argv) == 0
    out_dir = tmp_path / "phase/online/p"
    with open(out_dir / "phase.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 4 * 5 and all(r["status"] == "complete" for r in rows)
    meta = json.loads((out_dir / "phase.json").read_text())
    assert meta["cells_done"] == 40 and not meta["interrupted"]
    from matplotlib.image import imread

    for spec in ("adam", "amsgrad"):
        image = imread(out_dir / f"phase_{spec}.png")
        assert image.shape[:2] == (int(4.8 * 110), 12 * 110)
        assert image[..., :3].std() > 0.1  # not blank
        assert (out_dir / f"phase_{spec}.svg").stat().st_size > 1000
    assert main(argv) == 2  # never overwritten silently
    assert "already exists" in capsys.readouterr().err


def test_phase_bad_input(tmp_path, capsys):
    for extra in (
        ["--beta1", "0.5", "0.1", "3"],
        ["--beta2", "0.9", "1.0", "3"],
        ["--beta1", "0", "0.9", "0"],
        ["--optimizers", "sgd"],
        ["--optimizers", "torch.optim.SGD"],
        ["--lr", "-1"],
        ["--preset", "theorem3"],
    ):
        code = main(["phase", *extra, "--logdir", str(tmp_path / "x"), "--no-progress"])
        assert code == 2, extra
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "x").exists()


class _InterruptInSecondBatch:
    """A progress bar that sends SIGINT once the first batch of cells is done (during the second batch)."""

    def __init__(self, first_batch_run_steps):
        self.count, self.limit, self.sent = 0, first_batch_run_steps, False

    def update(self, n):
        self.count += n
        if self.count > self.limit and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)


def test_phase_ctrl_c_keeps_finished_cells(monkeypatch):
    import amsgrad_repro.synthetic.grid as grid_module

    monkeypatch.setattr(grid_module, "BATCH", 10)
    monkeypatch.setattr("amsgrad_repro.synthetic.windows.WINDOW_MAX", 1 << 16)  # windows of 65,536 steps
    b1, b2 = beta1_grid(0.0, 0.9, 5), beta2_grid(0.5, 0.999, 6)  # 30 cells: batches of 10
    steps = 200_000  # four windows of 65,536 steps per batch: Ctrl-C lands inside the second batch
    bar = _InterruptInSecondBatch(10 * steps)
    final_x, _, interrupted = run_grid(ProblemConfig("online"), ["adam"], b1, b2, steps, bar=bar)
    assert interrupted
    done = np.isfinite(final_x[0])
    assert done.sum() == 10  # the first batch, kept; the interrupted second batch and the third are not
    full, _, _ = run_grid(ProblemConfig("online"), ["adam"], b1, b2, steps)
    np.testing.assert_array_equal(final_x[0][done], full[0][done])


def test_phase_ctrl_c_records_where_the_cut_cells_stopped(monkeypatch):
    """The cells of the batch a signal cut are not lost: each keeps the step it reached and its x there, equal
    to a run of that many steps (what phase.csv writes with status "interrupted")."""
    import amsgrad_repro.synthetic.grid as grid_module

    monkeypatch.setattr(grid_module, "BATCH", 10)
    monkeypatch.setattr("amsgrad_repro.synthetic.windows.WINDOW_MAX", 1 << 16)  # windows of 65,536 steps
    b1, b2 = beta1_grid(0.0, 0.9, 5), beta2_grid(0.5, 0.999, 6)
    steps = 200_000
    grid = run_grid(ProblemConfig("online"), ["adam"], b1, b2, steps, bar=_InterruptInSecondBatch(10 * steps))
    cut = (grid.steps_done[0] > 0) & ~np.isfinite(grid.final_x[0])
    assert cut.sum() == 10 and np.all(np.isfinite(grid.stopped_x[0][cut]))
    reached = int(grid.steps_done[0][cut][0])
    assert 0 < reached < steps and reached % 65_536 == 0  # stopped at a window boundary
    shorter, _, _ = run_grid(ProblemConfig("online"), ["adam"], b1, b2, reached)
    np.testing.assert_array_equal(grid.stopped_x[0][cut], shorter[0][cut])
    assert np.all(grid.steps_done[0][np.isfinite(grid.final_x[0])] == steps)


def test_phase_ctrl_c_in_a_batch_last_window_stops_after_that_batch(monkeypatch):
    import amsgrad_repro.synthetic.grid as grid_module

    monkeypatch.setattr(grid_module, "BATCH", 10)
    b1, b2 = beta1_grid(0.0, 0.9, 5), beta2_grid(0.5, 0.999, 6)
    steps = 3000  # one window per batch: the signal arrives after the second batch's only window
    final_x, _, interrupted = run_grid(
        ProblemConfig("online"), ["adam"], b1, b2, steps, bar=_InterruptInSecondBatch(10 * steps)
    )
    assert interrupted and np.isfinite(final_x[0]).sum() == 20


def _phase_cut(spawn, wait_for_bar, tmp_path, steps: str, sig: int) -> tuple:
    """``phase`` stopped by ``sig`` once its bar has moved: every cell of the first batch has run a window (an
    event, not a time: on a busy machine a wall-clock wait may find it not yet started, and CPU seconds count the
    kernels' loading too)."""
    argv = ["phase", "--steps", steps, "--beta1", "0", "0.9", "3", "--beta2", "0.5", "0.999", "3", "--progress"]
    proc = spawn(
        [sys.executable, "-m", "amsgrad_repro", *argv, "--logdir", str(tmp_path), "--run-name", "cut"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    moved = re.compile(r"\| *(\d[\d.]*[kMG]?)/")  # tqdm's "n/total", n scaled (unit_scale)
    err = wait_for_bar(proc, lambda text: any(m[1] not in ("0", "0.00") for m in moved.finditer(text)), guard=600)
    proc.send_signal(sig)
    proc.wait(timeout=120)
    return proc, proc.stdout.read(), err()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_phase_stopped_before_any_cell_finished_records_where_each_stopped(tmp_path, sig, code, spawn,
                                                                           wait_for_bar):  # fmt: skip
    # 9 cells of 10^8 steps are one batch: a stop once the bar has moved finishes no cell, but every cell has run some
    # steps, so (as for every other command, docs/runs.md) the directory is kept, saying where each cell stopped
    proc, out, err = _phase_cut(spawn, wait_for_bar, tmp_path, "100000000", sig)
    assert proc.returncode == code, err
    assert "Traceback" not in err and "0 of 9 cells finished, 9 stopped part-way" in out
    run = tmp_path / "phase/online/cut"
    with open(run / "phase.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["status"] for r in rows} == {"interrupted"} and all(0 < int(r["steps_done"]) < 10**8 for r in rows)
    meta = json.loads((run / "phase.json").read_text())
    assert meta["status"] == "interrupted" and meta["cells_done"] == 0 and meta["cells_interrupted"] == 9


# --- plot --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def figure_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("fig")
    common = ["--steps", "30000", "--log-every", "1000", "--logdir", str(root), "--run-name", "r", "--no-progress"]
    assert main(["online", *common, "--optimizers", "adam", "amsgrad-paper"]) == 0
    assert main(["stochastic", *common, "--optimizers", "adam", "amsgrad", "--seed", "0:3"]) == 0
    return root


def test_figure1_layout_from_real_runs(figure_runs):
    fig = make_figure([figure_runs / "online/r", figure_runs / "stochastic/r"])
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["online: R_t / t", "online: x_t", "stochastic: x_t"]
    assert axes[0].get_xscale() == "log" and axes[1].get_xscale() == "linear"
    # the R_t/t panel shows every curve whole, Adam's early steps included (log-log; nothing clipped)
    lo, hi = axes[0].get_ylim()
    drawn = [v for line in axes[0].get_lines() for v in line.get_ydata()]
    assert axes[0].get_yscale() == "log" and lo <= min(drawn) and hi >= max(drawn)
    assert [len(ax.get_lines()) for ax in axes] == [2, 2, 2]
    line = axes[1].get_lines()[0]
    assert line.get_xdata()[-1] == 30000 and len(line.get_xdata()) == 30
    assert len(axes[2].collections) == 2  # mean ± sd bands over the three seeds
    assert len(axes[1].collections) == 0  # one seed online: no band
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "Adam" in labels and "AMSGrad (paper, Alg. 2)" in labels
    assert "AMSGrad (PyTorch variant); mean ± sd over 3 seeds" in labels  # one pair of parentheses


def test_plot_command_writes_png_and_svg(figure_runs, capsys):
    out = figure_runs / "out" / "fig1"
    assert main(["plot", str(figure_runs / "online/r"), str(figure_runs / "stochastic/r"), "--out", str(out)]) == 0
    from matplotlib.image import imread

    image = imread(out.with_suffix(".png"))
    assert image.shape[0] > 300 and image[..., :3].std() > 0.05
    assert out.with_suffix(".svg").read_text().startswith("<?xml")
    assert main(["plot", str(figure_runs / "stochastic/r")]) == 0  # default: inside the run dir
    assert (figure_runs / "stochastic/r/figure.png").exists()


def test_plot_missing_or_empty_run_dir_is_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for path in (tmp_path / "missing", tmp_path / "empty"):
        assert main(["plot", str(path)]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    proc = subprocess.run(
        [sys.executable, "-m", "amsgrad_repro", "plot", str(tmp_path / "missing")], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_one_run_dir_gives_its_two_panels(figure_runs):
    fig = make_figure([figure_runs / "online/r"])
    assert len(fig.axes) == 2
    steps = fig.axes[1].get_lines()[0].get_xdata()
    assert np.all(np.diff(steps) > 0)


def test_a_log_t_panel_whose_mean_goes_negative_shows_every_curve_whole():
    """Issue 27: on a log-t axis the first steps are in view, so the limits come from everything drawn, not from
    t ≥ 1 % of the run (which set the floor at 0 and cut off the negative means docs/figures.md describes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from amsgrad_repro.plot import Series, _draw

    steps = np.arange(1, 100_001, 100)
    mean = 300 / steps - 0.05  # hundreds at first, then below zero for most of the run
    _, ax = plt.subplots()
    _draw(ax, [Series("a", steps, mean, np.full_like(mean, 0.01), 3)], "R_t / t", "seeds", "log")
    lo, hi = ax.get_ylim()
    assert ax.get_yscale() == "linear" and lo <= mean.min() - 0.01 and hi >= mean.max()
    _, ax = plt.subplots()
    _draw(ax, [Series("a", steps, mean, None, 1)], "R_t / t", "linear t", "linear")
    lo, hi = ax.get_ylim()  # a linear t-axis: the first 1 % is a sliver, left out of the limits, 0 kept in view
    assert lo <= mean.min() and hi < mean.max() and lo < 0 < hi
    plt.close("all")
