"""The fused engine against the Trial and a plain torch loop, and its own invariances."""

import functools
import os
import signal
import tracemalloc

import numpy as np
import pytest
import torch

from amsgrad_repro.synthetic.fused import FusedRun, simulate
from amsgrad_repro.synthetic.problems import Online, Stochastic
from amsgrad_repro.synthetic.windows import log_points

STEPS = 20_000


def fused_every_step(problem, runs, steps):
    """Fused trajectories with a snapshot at every step: (x (R, T), R_t/t (R, T))."""
    xs, avg = [], []

    def on_log(ts, x, r):
        xs.append(x)
        avg.append(r)

    simulate([problem], runs, steps, log_every=1, on_log=on_log, window=4096)
    return np.concatenate(xs, axis=1), np.concatenate(avg, axis=1)


@pytest.mark.parametrize("setting", [Online, Stochastic])
# lr 1e-2 is also in test_algorithms.py's every-optimizer lockstep test (5,000 steps), so its 20,000-step run here
# waits for -m slow, keeping the default suite under 15 minutes
@pytest.mark.parametrize("lr", [1e-3, pytest.param(1e-2, marks=pytest.mark.slow), 1e-1])
def test_fused_equals_trial_every_step(setting, lr, trial_trajectory):
    """float32, 20,000 steps. Tolerance 1e-6 ≈ 16 float32 ulps of |x| ≤ 1: the engines differ only by torch's
    CPU sqrt (±1 ulp on ~15 % of float32 inputs, docs/engines.md), measured at one ulp or less over
    tests/test_update_rules.py's sweep; a wrong rule moves x by ≥ 1e-4 there."""
    runs = [FusedRun.of("adam", lr=lr), FusedRun.of("amsgrad", lr=lr)]
    x_fused, avg_fused = fused_every_step(setting(), runs, STEPS)
    for k, amsgrad in enumerate([False, True]):
        problem = setting()
        opt = torch.optim.Adam(problem.parameters(), lr=lr, betas=(0.9, 0.99), eps=1e-8, amsgrad=amsgrad)
        x_trial, avg_trial = trial_trajectory(problem, opt, STEPS)
        assert np.max(np.abs(x_fused[k] - x_trial)) <= 1e-6
        assert np.max(np.abs(avg_fused[k] - avg_trial)) <= 1e-6
        # the summary values: final iterate and R_T/T
        assert abs(float(x_fused[k, -1]) - problem.x.item()) <= 1e-6
        assert abs(avg_fused[k, -1] - avg_trial[-1]) <= 1e-6


@pytest.mark.parametrize("setting", [Online, Stochastic])
def test_fused_equals_plain_torch_loop(setting, plain_loop):
    """float32, against a loop written in conftest (no torchbearer); tolerance as in the test above."""
    runs = [FusedRun.of("adam", lr=1e-2), FusedRun.of("amsgrad", lr=1e-2)]
    x_fused, avg_fused = fused_every_step(setting(), runs, STEPS)
    for k, amsgrad in enumerate([False, True]):
        make = functools.partial(torch.optim.Adam, lr=1e-2, betas=(0.9, 0.99), eps=1e-8, amsgrad=amsgrad)
        x_ref, avg_ref = plain_loop(setting(), make, STEPS)
        assert np.max(np.abs(x_fused[k] - x_ref)) <= 1e-6
        assert np.max(np.abs(avg_fused[k] - avg_ref)) <= 1e-6


def test_window_and_log_interval_do_not_change_the_trajectory():
    runs = [FusedRun.of("adam", lr=1e-2), FusedRun.of("amsgrad", lr=1e-2)]
    steps = 50_000
    ref_x, ref_r = fused_every_step(Stochastic(seed=4), runs, steps)
    # a window of one step is one kernel call a step (a parallel region each): its own, shorter run
    for window, log_every, n in [(1 << 16, 1000, steps), (777, 10, steps), (5000, 1, steps), (1, 997, 3000)]:
        got = {}

        def on_log(ts, x, r, got=got):
            for j, t in enumerate(ts.tolist()):
                got[t] = (x[:, j].copy(), r[:, j].copy())

        result = simulate([Stochastic(seed=4)], runs, n, log_every=log_every, on_log=on_log, window=window)
        expected_ts = sorted(set(range(log_every, n + 1, log_every)) | {n})
        assert sorted(got) == expected_ts
        for t, (x, r) in got.items():
            np.testing.assert_array_equal(x, ref_x[:, t - 1])
            np.testing.assert_array_equal(r, ref_r[:, t - 1])
        np.testing.assert_array_equal(result.x, ref_x[:, n - 1])


def test_many_runs_at_once_equal_runs_one_by_one():
    problems = [Stochastic(seed=0), Stochastic(seed=1), Online()]
    runs = [
        FusedRun.of(opt, problem=i, lr=lr, beta1=b1, beta2=b2)
        for opt in ("adam", "amsgrad", "sgd", "nadam", "amsgrad-paper", "adamnc")
        for lr in (1e-3, 3e-2)
        for b1, b2 in ((0.9, 0.99), (0.0, 0.999))
        for i in range(3)
    ]
    together = simulate(problems, runs, 30_000, log_every=1000)
    for k, run in enumerate(runs):
        alone = simulate([problems[run.problem]], [FusedRun(run.choice)], 30_000, log_every=1000)
        assert alone.x[0] == together.x[k]
        assert alone.average_regret[0] == together.average_regret[k]


def test_paper_length_behaviour():
    """lr 1e-3, β (0.9, 0.99), 10 M steps: the paper's Figure 1 outcome. (About a second with the fused engine.)"""
    runs = [FusedRun.of("adam"), FusedRun.of("amsgrad")]
    online = simulate([Online()], runs, 10_000_000, log_every=1_000_000)
    assert online.x[0] > 0.99 and online.x[1] < -0.99
    assert online.average_regret[0] > 0.19 and online.average_regret[1] < 0.05
    stochastic = simulate([Stochastic(seed=0)], runs, 10_000_000, log_every=1_000_000)
    assert stochastic.x[0] > 0.9 and stochastic.x[1] < -0.5


def test_peak_memory_does_not_grow_with_steps():
    runs = [FusedRun.of("adam"), FusedRun.of("amsgrad")]
    simulate([Stochastic()], runs, 10)  # compile / load outside the measurement

    def peak(steps):
        tracemalloc.start()
        simulate([Stochastic()], runs, steps, log_every=1000, on_log=lambda *a: None)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    # both past the largest automatic window (WINDOW_MAX steps, ~4 M): from there on, nothing grows with T
    small, large = peak(6_000_000), peak(30_000_000)
    assert large < 1.2 * small + 100_000, (small, large)


def test_log_points():
    assert log_points(1, 10, 3, 100).tolist() == [3, 6, 9]
    assert log_points(4, 3, 3, 100).tolist() == [6]
    assert log_points(95, 10, 3, 100).tolist() == [96, 99, 100]
    assert log_points(1, 5, 10, 5).tolist() == [5]


def test_ctrl_c_stops_at_a_window_boundary_and_reports_it():
    logged = []

    def on_window(n):
        if n == 1000 and not hasattr(on_window, "sent"):
            on_window.sent = True
            os.kill(os.getpid(), signal.SIGINT)

    result = simulate(
        [Online()],
        [FusedRun.of("adam")],
        1_000_000,
        log_every=300,
        on_log=lambda ts, x, r: logged.append((ts.copy(), x.copy(), r.copy())),
        on_window=on_window,
        window=1000,
    )
    assert result.interrupted
    assert result.steps_done == 1000
    assert logged[0][0].tolist() == [300, 600, 900]
    ts, x, r = logged[-1]
    assert ts.tolist() == [1000]  # the last completed step is reported too
    assert x[0, -1] == result.x[0] and r[0, -1] == result.average_regret[0]


def test_unknown_fused_optimizer_is_a_value_error():
    with pytest.raises(ValueError, match="fused engine has no optimizer"):
        FusedRun.of("torch.optim.SGD")


@pytest.mark.parametrize("n_problems", [1, 3])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_lane_kernel_is_bit_identical_to_the_single_run_kernel(dtype, n_problems):
    """amsgrad_repro.synthetic.lanes against the single-run kernel: every Adam-family rule it takes (Adam, the three
    AMSGrads, α constant or α/√t), β's from 0 to 0.9999 (bias corrections that end at once, and ones still running
    after 20,000 steps, across several tables and windows), one problem (every block plays one stream) or three
    interleaved (blocks that mix them), a run the lanes do not take (Adamax) in between, and a last block that is
    not a whole number of vectors (padded). x, R_t/t and every snapshot must be equal to the bit."""
    names = ["adam", "amsgrad-pytorch", "amsgrad-paper", "amsgrad-corrected"]
    runs = []
    for i in range(48):
        spec = dict(lr=1e-3 * (1 + i % 7), beta1=[0.0, 0.5, 0.9, 0.99][i // 12], beta2=[0.5, 0.99, 0.9999][i % 3])
        runs.append(FusedRun.of(names[i % 4], i % n_problems, **spec))
    runs.insert(5, FusedRun.of("adamax", 1 % n_problems))
    runs.append(FusedRun.of("adam", 2 % n_problems, lr=0.01, lr_schedule="sqrt"))
    problems = [Stochastic(seed=s, dtype=dtype) for s in range(n_problems)]
    outputs = {}
    for simd in (False, True):
        logged = []

        def on_log(ts, x, r, logged=logged):
            logged.append((ts.copy(), x.copy(), r.copy()))

        result = simulate(problems, runs, 20_011, log_every=997, on_log=on_log, window=7_000, dtype=dtype, simd=simd)
        outputs[simd] = (result, logged)
    (single, single_log), (lanes, lanes_log) = outputs[False], outputs[True]
    assert single.x.dtype == lanes.x.dtype == np.dtype(dtype)
    assert np.array_equal(single.x, lanes.x) and np.array_equal(single.average_regret, lanes.average_regret)
    assert len(single_log) == len(lanes_log) == 3
    for (t1, x1, r1), (t2, x2, r2) in zip(single_log, lanes_log, strict=True):
        assert np.array_equal(t1, t2) and np.array_equal(x1, x2) and np.array_equal(r1, r2)
    assert len(set(single.x.tolist())) > 20  # the runs differ: a mix-up of rows would show


def test_threads_and_windows_are_chosen_from_the_work_and_change_no_number(tmp_path, read_summary, read_scalars):
    """One run gets one thread (a run is sequential), many get the CPUs this process may use; the automatic window
    keeps a call near WINDOW_RUN_STEPS run-steps within its bounds; --threads 1 and the default write the same."""
    import numba

    from amsgrad_repro.cli import main
    from amsgrad_repro.synthetic import windows
    from amsgrad_repro.values import usable_cpus

    cpus = min(usable_cpus(), numba.get_num_threads())
    assert windows.thread_count(1) == 1 and windows.thread_count(100) == cpus and windows.thread_count(100, 1) == 1
    assert windows.auto_window(1, 1, 1000) == windows.WINDOW_MAX
    assert windows.auto_window(2048, 1, 1000) == windows.WINDOW_MIN
    assert windows.auto_window(2, 1, 1) == windows.WINDOW_POINTS  # log_every=1: at most 65,536 snapshots a window
    assert windows.auto_window(1, 64, 1000) == windows.WINDOW_COEFS // 64
    argv = ["stochastic", "--steps", "20000", "--log-every", "1000", "--seed", "0", "1", "--logdir", str(tmp_path)]
    assert main([*argv, "--run-name", "auto", "--no-progress"]) == 0
    assert main([*argv, "--run-name", "one", "--threads", "1", "--no-progress"]) == 0
    a, b = read_summary(tmp_path / "stochastic/auto"), read_summary(tmp_path / "stochastic/one")
    assert b["config"]["threads"] == 1 and a["config"]["threads"] is None
    assert [(r["final_x"], r["average_regret"]) for r in a["runs"]] == [
        (r["final_x"], r["average_regret"]) for r in b["runs"]
    ]
    for r in a["runs"]:
        assert read_scalars(tmp_path / "stochastic/auto" / r["name"]) == read_scalars(
            tmp_path / "stochastic/one" / r["name"]
        )
    assert main([*argv, "--run-name", "many", "--threads", str(usable_cpus() + 1)]) == 2
    assert not (tmp_path / "stochastic/many").exists()
