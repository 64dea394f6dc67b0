"""``verdict`` (issue 23): the rule, the torch engine against the Trial step by step, batched runs against separate
runs, import by path, every bad spec, the command end to end, and the rule's stability when the steps double.

Usage::

    pytest tests/test_verdict.py
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from amsgrad_repro.cli import main
from amsgrad_repro.optimizers import ZOO
from amsgrad_repro.synthetic.config import ProblemConfig
from amsgrad_repro.synthetic.torchloop import TorchRun, layout_for, simulate_torch
from amsgrad_repro.verdict import Battery, check, judge, overall, run_battery

# --- the rule --------------------------------------------------------------------------------------------------


def _logged(path: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ts = np.arange(1, len(path) + 1) * 10
    return ts, path, np.zeros_like(path)


@pytest.mark.parametrize(
    "path, verdict",
    [
        (np.r_[np.linspace(0, -1, 50), np.full(350, -1.0)], "converges"),  # reaches x* = −1 early and stays
        (np.r_[np.linspace(0, -0.9, 100), np.full(300, -0.95)], "converges"),
        (np.r_[np.linspace(0, 1, 100), np.full(300, 1.0)], "fails"),  # the worst point
        (np.r_[np.zeros(100), np.full(300, 0.6)], "fails"),  # stays near the worst point
        (np.r_[np.zeros(100), np.full(300, 0.1)], "undecided"),  # hardly moved from the middle of F
        (np.full(400, -0.4), "undecided"),  # between the bands
        (np.r_[np.full(200, 0.8), np.full(200, -0.9)], "undecided"),  # far at T/2, near at T
        (np.r_[np.full(200, -0.9), np.full(200, 0.8)], "undecided"),  # near at T/2, far at T
    ],
)
def test_the_rule_on_trajectories_written_here(path, verdict):
    ts, xs, rs = _logged(path)
    assert judge(ts, xs, rs, x_star=-1.0, lo=-1.0, hi=1.0, steps=4000).verdict == verdict


def test_a_problem_fails_if_any_run_fails_else_converges_if_any_converges():
    ts = np.arange(1, 401) * 10
    v = {name: judge(ts, np.full(400, x), np.zeros(400), -1.0, -1.0, 1.0, 4000) for name, x in
         (("c", -1.0), ("f", 1.0), ("u", -0.3))}  # fmt: skip
    assert overall([v["c"], v["u"], v["f"]])["verdict"] == "fails"
    assert overall([v["c"], v["u"]]) == {"verdict": "converges", "counts": {"converges": 1, "fails": 0,
                                         "undecided": 1}, "runs": 2}  # fmt: skip
    assert overall([v["u"]])["verdict"] == "undecided"


@pytest.mark.parametrize(
    "first", [Battery.steps // 2, pytest.param(Battery.steps, marks=pytest.mark.slow)], ids=["T=5e5", "T=1e6"]
)
def test_doubling_the_steps_flips_no_verdict_of_the_zoo(first):
    """Every zoo optimizer's battery at T and at 2T (the default suite: 500,000 and 10⁶ steps, the default T;
    ``-m slow``: 10⁶ and 2·10⁶): a run may go from undecided to a verdict, never from converges to fails or back;
    and at the default T and beyond the paper's pair gives the paper's answer on every problem."""
    verdicts = {}
    for spec in ZOO:
        for steps in (first, 2 * first):
            result = run_battery(spec, Battery(steps=steps))
            verdicts[spec, steps] = dict(zip(result["cases"], (j["verdict"] for j in result["judged"]), strict=True))
            if spec in ("adam", "amsgrad-pytorch") and steps >= Battery.steps:
                problems = {p: v["verdict"] for p, v in result["problems"].items()}
                expected = "fails" if spec == "adam" else "converges"
                assert set(problems.values()) == {expected}, (spec, steps, problems)
    for spec in ZOO:
        one, two = verdicts[spec, first], verdicts[spec, 2 * first]
        flips = [c for c in one if {one[c], two[c]} == {"converges", "fails"}]
        assert not flips, (spec, flips)


# --- the torch engine ------------------------------------------------------------------------------------------

OPTIMIZERS = [
    (torch.optim.Adam, {"lr": 1e-2, "betas": (0.9, 0.99)}),
    (torch.optim.Adam, {"lr": 1e-3, "amsgrad": True}),
    (torch.optim.AdamW, {"lr": 1e-2, "weight_decay": 0.1}),
    (torch.optim.SGD, {"lr": 1e-3, "momentum": 0.9, "nesterov": True}),
    (torch.optim.RMSprop, {"lr": 1e-3}),
    (torch.optim.Adagrad, {"lr": 1e-2}),
    (torch.optim.RAdam, {"lr": 1e-2}),
    (torch.optim.NAdam, {"lr": 1e-2}),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("setting", ["online", "stochastic"])
@pytest.mark.parametrize("cls, kwargs", OPTIMIZERS, ids=[f"{c.__name__}-{i}" for i, (c, _) in enumerate(OPTIMIZERS)])
def test_the_torch_engine_equals_the_trial_at_every_step(cls, kwargs, setting, dtype, trial_trajectory):
    config = ProblemConfig(setting, seed=3, dtype=dtype)
    problem = config.make()
    xs, average = trial_trajectory(problem, cls(problem.parameters(), **kwargs), 3000)
    result = simulate_torch(cls, {}, [TorchRun(config.functions())], [kwargs], 3000, 1)
    ts, x, r = result.logged
    assert ts.tolist() == list(range(1, 3001))
    assert np.array_equal(x[0], xs) and np.array_equal(r[0], average)


def _runs():
    """Two settings (param groups) × two problems × two seeds: eight runs."""
    return [TorchRun(ProblemConfig(setting, seed=s).functions(), g) for g in (0, 1)
            for setting in ("online", "stochastic") for s in (1, 2)]  # fmt: skip


@pytest.mark.parametrize("cls", [torch.optim.Adam, torch.optim.SGD, torch.optim.Adagrad])
def test_batched_runs_equal_the_runs_one_at_a_time(cls):
    groups = [{"lr": 1e-3}, {"lr": 1e-2}]
    runs = _runs()
    alone = simulate_torch(cls, {}, runs, groups, 2000, 7, layout="optimizers")
    for layout in ("vector", "parameters"):
        got = simulate_torch(cls, {}, runs, groups, 2000, 7, layout=layout)
        for a, b in zip(got.logged, alone.logged, strict=True):
            assert np.array_equal(a, b)
    assert layout_for(cls, {}, runs, groups) == "vector"


class NormalizedSGD(torch.optim.Optimizer):
    """A step of lr·g/‖g‖ per parameter: it mixes a tensor's coordinates (not coordinate-wise)."""

    def __init__(self, params, lr=1e-2):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                p.add_(p.grad / p.grad.norm().clamp_min(1e-12), alpha=-group["lr"])


class GlobalNormSGD(torch.optim.Optimizer):
    """A step of lr·g/‖all gradients‖: it mixes parameters too."""

    def __init__(self, params, lr=1e-2):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        params = [p for g in self.param_groups for p in g["params"]]
        norm = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in params)).clamp_min(1e-12)
        for group in self.param_groups:
            for p in group["params"]:
                p.add_(p.grad / norm.to(p.dtype), alpha=-group["lr"])


@pytest.mark.parametrize("cls, layout", [(NormalizedSGD, "parameters"), (GlobalNormSGD, "optimizers")])
def test_an_optimizer_that_mixes_runs_is_run_apart(cls, layout):
    runs, groups = _runs(), [{"lr": 1e-2}, {"lr": 1e-3}]
    assert layout_for(cls, {}, runs, groups) == layout
    alone = simulate_torch(cls, {}, runs, groups, 500, 1, layout="optimizers")
    got = simulate_torch(cls, {}, runs, groups, 500, 1, layout=layout)
    assert np.array_equal(got.logged[1], alone.logged[1])
    vector = simulate_torch(cls, {}, runs, groups, 500, 1, layout="vector")
    assert not np.array_equal(vector.logged[1], alone.logged[1])  # the check is needed: batching would be wrong


# --- the command -----------------------------------------------------------------------------------------------

USER_FILE = '''
import torch


class MyAMSGrad(torch.optim.Adam):
    """torch's Adam with amsgrad=True, under another name: a user's optimizer in a file."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(params, lr=lr, betas=betas, eps=eps, amsgrad=True)


class NotAnOptimizer:
    pass


class NeedsClosure(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3):
        super().__init__(params, {"lr": lr})

    def step(self, closure):
        return closure()


class Broken(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3):
        super().__init__(params, {"lr": lr})

    def step(self, closure=None):
        raise ArithmeticError("this optimizer cannot step")
'''


@pytest.fixture(scope="module")
def user_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("user") / "my_optim.py"
    path.write_text(textwrap.dedent(USER_FILE))
    return path


def test_the_command_with_zoo_torch_and_a_class_from_a_file(tmp_path, user_file, capsys, read_scalars):
    argv = ["verdict", "--optimizers", "adam", "amsgrad", "torch.optim.AdamW", f"{user_file}:MyAMSGrad,lr=0.01",
            "--steps", "20000", "--problems", "online", "theorem1", "--jobs", "1", "--logdir", str(tmp_path),
            "--run-name", "v", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "adam " in out and "fused (fused)" in out and "torch (vector)" in out
    summary = json.loads((tmp_path / "verdict" / "v" / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["battery"]["steps"] == 20_000
    opts = summary["optimizers"]
    assert opts["adam"]["problems"]["online"]["verdict"] == "fails"
    assert opts["adam"]["problems"]["theorem1"]["verdict"] == "fails"
    assert opts["amsgrad"]["problems"]["theorem1"]["verdict"] == "converges"
    mine = opts[f"{user_file}:MyAMSGrad,lr=0.01"]
    assert [r["name"] for r in mine["runs"]] == ["online/paper/lr=own", "theorem1/theorem/lr=own"]
    assert mine["problems"]["theorem1"]["verdict"] == "converges"
    run = tmp_path / "verdict" / "v" / "adam" / "online" / "paper" / "lr=0.01"
    scalars = read_scalars(run)
    assert [r["name"] for r in opts["adam"]["runs"]][1] == "online/paper/lr=0.01"
    assert len(scalars["online/x"]) == 400 and scalars["online/x"][-1][0] == 20_000  # every 50 steps, and T
    assert np.mean([v for t, v in scalars["online/x"] if t > 15_000]) == pytest.approx(
        opts["adam"]["runs"][1]["average_x"][1], abs=1e-6
    )
    assert scalars["online/verdict"] == [(20_000, 1.0)]  # fails


@pytest.mark.parametrize(
    "spec, says",
    [
        ("nosuch", "unknown optimizer"),
        ("collections:OrderedDict", "not a torch.optim.Optimizer"),
        ("no_such_module_xyz:Thing", "importing it failed"),
        ("torch.optim:NoSuchClass", "has no attribute"),
        ("{file}:NotAnOptimizer", "not a torch.optim.Optimizer"),
        ("{file}:NeedsClosure", "dry step failed"),
        ("{file}:Broken", "dry step failed: this optimizer cannot step"),
        ("/nonexistent/opt.py:Thing", "is not a file"),
        ("torch.optim.LBFGS", "dry step failed"),
        ("torch.optim.Adam,beta1=0.9", "give both beta1 and beta2"),
        ("torch.optim.Adam,lr=x", "not a number"),
        ("{file}:MyAMSGrad,nosuch=1", "cannot be built"),
    ],
)
def test_every_bad_spec_is_one_line_and_nothing_written(tmp_path, user_file, capsys, spec, says):
    argv = ["verdict", "--optimizers", spec.format(file=user_file), "--steps", "1000", "--logdir", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and says in err, err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "argv, says",
    [(["--lr", "x"], "--lr"), (["--steps", "3"], "--steps"), (["--seeds", "0"], "--seeds"),
     (["--lr", "1e-3", "1e-3"], "repeated")],
)  # fmt: skip
def test_bad_battery_flags_are_one_line(tmp_path, capsys, argv, says):
    assert main(["verdict", "--optimizers", "adam", *argv, "--logdir", str(tmp_path)]) == 2
    assert says in capsys.readouterr().err and not any(tmp_path.iterdir())


def test_check_is_three_lines_in_a_library_test():
    assert check("adam", steps=20_000, problems=("theorem1",)) == {"theorem1": "fails"}
    assert check(torch.optim.Adam, steps=20_000, problems=("theorem1",), amsgrad=True)["theorem1"] == "converges"
    with pytest.raises(ValueError, match=r"not a torch\.optim\.Optimizer"):
        check(NotATorchOptimizer)


class NotATorchOptimizer:
    pass


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_verdict_with_a_summary_or_nothing(tmp_path, signum, code, spawn):
    """The signal is sent once the header is printed (an event); wherever it lands, the command ends with the
    signal's code and leaves either a summary whose runs are interrupted or not started, or nothing at all."""
    argv = ["verdict", "--optimizers", "torch.optim.Adam", "adam", "--steps", "4000000", "--jobs", "1"]
    proc = spawn(
        [sys.executable, "-m", "amsgrad_repro", *argv, "--logdir", str(tmp_path), "--run-name", "v"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        for line in proc.stdout:
            if "writing to" in line:
                break
        proc.send_signal(signum)
        assert proc.wait(timeout=300) == code, proc.stderr.read()  # a hang guard: the engine stops at a window
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    run_dir = tmp_path / "verdict" / "v"
    if run_dir.exists():
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["status"] == "interrupted" and summary["stopped_by"] == signal.Signals(signum).name
        assert [r["status"] for r in summary["runs"]] in (["interrupted", "not started"], ["not started"] * 2)
    else:
        assert not (tmp_path / "verdict").exists() or not any((tmp_path / "verdict").iterdir())
