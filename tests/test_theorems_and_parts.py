"""Issue 23's published thresholds as checks, and how a torch optimizer's battery is cut and run: Theorem 1's
cells fail in both engines; ``phase --verdict`` judges each cell by verdict's rule (the same verdict as the battery
gives the same run) and draws the boundary; a battery cut into 1, 2 or 3 parts gives the same numbers;
Schedule-Free's ``train()`` convention.

Usage::

    pytest tests/test_theorems_and_parts.py
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from amsgrad_repro.cli import main
from amsgrad_repro.optimizers import resolve
from amsgrad_repro.synthetic.config import ProblemConfig
from amsgrad_repro.synthetic.fused import FusedRun, simulate
from amsgrad_repro.synthetic.phase_map import boundary
from amsgrad_repro.synthetic.rule import judge, log_every_for
from amsgrad_repro.synthetic.torchloop import WINDOW, TorchRun, run_torch
from amsgrad_repro.verdict import Battery, run_battery
from amsgrad_repro.verdict.battery import load, merge, parts, plan

# --- Theorem 1: β1 = 0, β2 = 1/(1+C²), C > 2, f_t = C·x if t mod 3 = 1 else −x: Adam fails ------------------------

CS = (2.1, 2.5, 3.0, 5.0, 10.0, 100.0)
LRS = (1e-3, 1e-2, 1e-1)
STEPS = 6000


def _judged(ts, xs, rs, problem) -> list[str]:
    lo, hi = problem.bounds.lo, problem.bounds.hi
    return [judge(ts, x, r, problem.x_star, lo, hi, STEPS).verdict for x, r in zip(xs, rs, strict=True)]


def test_every_cell_theorem_1_proves_fails_in_both_engines():
    """Every C > 2 tried and every step size: the theorem's (β1, β2) cell fails, in the fused engine (the zoo's
    adam) and in the torch engine (torch.optim.Adam). The zoo's adam is the paper's algorithm written apart from
    torch's (its own order of operations), so the two agree to float32 rounding, not to the bit."""
    log_every = log_every_for(STEPS)
    cells = [(c, lr) for c in CS for lr in LRS]
    problems = {c: ProblemConfig("online", "theorem1", c=c).functions() for c in CS}
    betas = {c: ProblemConfig("online", "theorem1", c=c).theorem_betas() for c in CS}
    assert all(b[0] == 0.0 and b[1] == 1 / (1 + c * c) for c, b in betas.items())
    logged = []
    fused = [FusedRun(resolve("adam", {"lr": lr, "beta1": 0.0, "beta2": betas[c][1]}), CS.index(c)) for c, lr in cells]
    simulate([problems[c] for c in CS], fused, STEPS, log_every=log_every,
             on_log=lambda t, x, r: logged.append((t.copy(), x.astype(np.float64), r.copy())))  # fmt: skip
    ts = np.concatenate([t for t, _, _ in logged])
    xs, rs = (np.concatenate([entry[n] for entry in logged], axis=1) for n in (1, 2))
    groups = [{"lr": lr, "betas": betas[c]} for c, lr in cells]
    torch_runs = [TorchRun(problems[c], k) for k, (c, _) in enumerate(cells)]
    result = run_torch(torch.optim.Adam, {}, torch_runs, groups, STEPS, log_every)
    t_ts, t_xs, t_rs = result.logged
    assert np.array_equal(ts, t_ts)
    np.testing.assert_allclose(xs, t_xs, rtol=0, atol=1e-5)
    for k, (c, lr) in enumerate(cells):
        problem = problems[c]
        (fused_verdict,) = _judged(ts, xs[k : k + 1], rs[k : k + 1], problem)
        (torch_verdict,) = _judged(t_ts, t_xs[k : k + 1], t_rs[k : k + 1], problem)
        assert (fused_verdict, torch_verdict) == ("fails", "fails"), (c, lr, xs[k, -5:])


def test_amsgrad_escapes_theorem_1_where_adam_fails():
    """The contrast the theorem is about: on the same cells AMSGrad does not fail (it is not a rule that calls
    everything on this problem a failure)."""
    problems = [ProblemConfig("online", "theorem1", c=c).functions() for c in CS]
    runs = [FusedRun(resolve("amsgrad", {"lr": 1e-2, "beta1": 0.0, "beta2": 1 / (1 + c * c)}), k)
            for k, c in enumerate(CS)]  # fmt: skip
    logged = []
    simulate(problems, runs, STEPS, log_every=log_every_for(STEPS),
             on_log=lambda t, x, r: logged.append((t.copy(), x.astype(np.float64), r.copy())))  # fmt: skip
    ts = np.concatenate([t for t, _, _ in logged])
    xs, rs = (np.concatenate([entry[n] for entry in logged], axis=1) for n in (1, 2))
    verdicts = [_judged(ts, xs[k : k + 1], rs[k : k + 1], p)[0] for k, p in enumerate(problems)]
    assert "fails" not in verdicts, verdicts


# --- phase --verdict ----------------------------------------------------------------------------------------------


def _phase(tmp_path, name: str, *more: str) -> list[dict]:
    argv = ["phase", "--beta1", "0.5", "0.9", "3", "--beta2", "0.9", "0.999", "3", "--steps", "40000",
            "--lr", "1e-2", "--logdir", str(tmp_path), "--run-name", name, "--no-progress", *more]  # fmt: skip
    assert main(argv) == 0
    with open(tmp_path / "phase" / "online" / name / "phase.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_phase_verdict_is_the_battery_s_verdict_and_changes_no_number(tmp_path):
    plain = _phase(tmp_path, "plain")
    judged = _phase(tmp_path, "judged", "--verdict")
    for a, b in zip(plain, judged, strict=True):  # the logging the rule needs changes no cell's numbers
        assert (a["final_x"], a["average_regret"]) == (b["final_x"], b["average_regret"])
    assert "verdict" not in plain[0] and {row["verdict"] for row in judged} <= {"converges", "fails", "undecided"}
    # the paper's cell, (0.9, 0.99), is the battery's online/paper/lr=0.01 run: the same verdict
    (cell,) = [r for r in judged if float(r["beta1"]) == 0.9 and abs(float(r["beta2"]) - 0.99) < 1e-9]
    result = run_battery("adam", Battery(steps=40000, lrs=(1e-2,), problems=("online",)))
    assert cell["verdict"] == result["judged"][0]["verdict"] == "fails"
    meta = json.loads((tmp_path / "phase" / "online" / "judged" / "phase.json").read_text())
    counts = meta["verdict"]["cells"]["adam"]
    assert sum(counts.values()) == 9 and counts["fails"] == sum(r["verdict"] == "fails" for r in judged)
    assert meta["verdict"]["rule"]["doc"] == "amsgrad_repro/synthetic/rule.py"


def test_the_boundary_runs_along_cell_edges():
    x, y = np.array([0.0, 1, 2, 3]), np.array([10.0, 11, 12, 13])
    corner = np.zeros((3, 3), bool)
    corner[0, 0] = True  # two edges inside the map: right of it and above it
    assert sorted(map(tuple, boundary(corner, x, y))) == [((0.0, 11.0), (1.0, 11.0)), ((1.0, 10.0), (1.0, 11.0))]
    middle = np.zeros((3, 3), bool)
    middle[1, 1] = True
    assert len(boundary(middle, x, y)) == 4
    assert boundary(np.ones((3, 3), bool), x, y) == []


# --- a torch optimizer's battery in parts ---------------------------------------------------------------------


def test_parts_are_balanced_by_settings_and_change_no_number():
    battery = Battery(steps=600, problems=("online", "theorem1", "theorem2"), seeds=(0,))
    optimizer = load("torch.optim.Adam")
    settings = list(dict.fromkeys(c.setting for c in plan(battery, optimizer)))
    assert len(settings) == 6  # paper, theorem and defaults β's × two step sizes
    for count, sizes in ((1, [6]), (2, [3, 3]), (4, [2, 2, 1, 1]), (9, [1] * 6)):
        cut = parts(battery, optimizer, count)
        assert [len(p) for p in cut] == sizes and [s for p in cut for s in p] == settings
    assert parts(battery, load("adam"), 4) == [None]  # a zoo name: one fused call
    whole = run_battery("torch.optim.Adam", battery)
    for count in (2, 3):
        pieces = [run_battery("torch.optim.Adam", battery, settings=p) for p in parts(battery, optimizer, count)]
        merged = merge(battery, "torch.optim.Adam", pieces)
        assert merged["cases"] == whole["cases"] and merged["judged"] == whole["judged"]
        assert np.array_equal(merged["xs"], whole["xs"]) and np.array_equal(merged["rs"], whole["rs"])


TRAIN_MODE = """
import torch


class TrainModeAdam(torch.optim.Adam):
    # Schedule-Free's convention: step() refuses to run until train() was called
    def __init__(self, params, **kwargs):
        super().__init__(params, **kwargs)
        self.training = False

    def train(self):
        self.training = True

    def step(self, closure=None):
        if not self.training:
            raise RuntimeError("not in train mode")
        return super().step(closure)
"""


def test_an_optimizer_with_train_mode_is_put_in_it_and_runs_as_its_base_class(tmp_path):
    path = tmp_path / "train_mode.py"
    path.write_text(TRAIN_MODE)
    battery = Battery(steps=400, problems=("online",), lrs=(1e-2,))
    ours = run_battery(f"{path}:TrainModeAdam", battery)
    base = run_battery("torch.optim.Adam", battery)
    assert np.array_equal(ours["xs"], base["xs"]) and ours["judged"] == base["judged"]


@pytest.mark.parametrize("spec", ["adam", "torch.optim.Adam"])
def test_a_battery_reports_every_run_step_once_as_it_goes(spec):
    """The progress a worker reports (verdict's bar): windows of run-steps, summing to steps × runs exactly."""
    battery = Battery(steps=9000, problems=("online", "stochastic"), seeds=(0, 1), lrs=(1e-2,))
    told: list[int] = []
    result = run_battery(spec, battery, on_window=told.append)
    assert sum(told) == battery.steps * len(result["cases"]) and all(n > 0 for n in told)
    if spec.startswith("torch"):
        assert len(told) == -(-battery.steps // WINDOW)  # one report a window of the torch engine, not one a step
