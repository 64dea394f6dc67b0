"""The second mutation pass (issue 28): a test for each slip that once passed the suite, deterministic on a quiet
and on a busy machine (no test here waits a fixed time for something to happen).

Usage::

    pytest tests/test_mutations.py

docs/development.md's mutation table lists each slip with the test here that catches it.
"""

from __future__ import annotations

import csv
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from amsgrad_repro.cli import main
from amsgrad_repro.synthetic.fused import FusedRun, simulate
from amsgrad_repro.synthetic.problems import Online, Stochastic

# --- the phase diagram's axes ----------------------------------------------------------------------------------


def test_each_phase_csv_row_is_the_run_at_the_betas_it_states(tmp_path):
    """phase.csv read as a reader reads it: every row's final x and R_T/T are those of an independent single run
    at the row's own β1 and β2. The grid is not square and has cells with β1 > β2, so β's written in each
    other's columns (or rows written in the wrong order) give other numbers."""
    argv = ["phase", "--steps", "3000", "--lr", "0.01", "--beta1", "0", "0.95", "3", "--beta2", "0.4", "0.99", "4"]
    assert main([*argv, "--optimizers", "adam", "amsgrad", "--logdir", str(tmp_path), "--run-name", "p"]) == 0
    with open(tmp_path / "phase" / "online" / "p" / "phase.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 3 * 4
    assert any(float(r["beta1"]) > float(r["beta2"]) for r in rows)
    for row in rows:
        run = FusedRun.of(row["optimizer"], lr=0.01, beta1=float(row["beta1"]), beta2=float(row["beta2"]))
        one = simulate([Online()], [run], 3000)
        assert row["final_x"] == f"{one.x[0]:.9g}" and row["average_regret"] == f"{one.average_regret[0]:.9g}", row
    assert len({r["final_x"] for r in rows}) > 12  # the cells differ, so a mix-up shows


# --- the lane kernel -------------------------------------------------------------------------------------------


def _both_kernels(problems, runs, steps: int, dtype: str):
    out = {}
    for simd in (False, True):
        logged = []

        def on_log(ts, x, r, logged=logged) -> None:
            logged.append((ts.copy(), x.copy(), r.copy()))

        result = simulate(problems, runs, steps, log_every=997, on_log=on_log, window=7_000, dtype=dtype, simd=simd)
        out[simd] = (result, logged)
    return out[False], out[True]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_lanes_with_beta1_above_beta2_past_both_corrections(dtype):
    """Blocks whose every run has β1 > β2: β2's bias correction is exactly 1.0 after ~50 steps, β1's (0.9 to
    0.999) after ~350 to ~36,000, so a block can take the steady loop only once β1's has finished too. 20,011
    steps go past both. Against the single-run kernel, to the bit, every snapshot."""
    names = ["adam", "amsgrad-pytorch", "amsgrad-paper", "amsgrad-corrected"]
    runs = [FusedRun.of(names[i % 4], lr=1e-3 * (1 + i % 5), beta1=[0.6, 0.9, 0.99, 0.999][i // 16], beta2=0.5)
            for i in range(64)]  # fmt: skip
    runs += [FusedRun.of(names[i % 4], lr=2e-3, beta1=0.95, beta2=[0.9, 0.6][i % 2]) for i in range(32)]
    (single, single_log), (lanes, lanes_log) = _both_kernels([Online(dtype=dtype)], runs, 20_011, dtype)
    assert np.array_equal(single.x, lanes.x) and np.array_equal(single.average_regret, lanes.average_regret)
    for (t1, x1, r1), (t2, x2, r2) in zip(single_log, lanes_log, strict=True):
        assert np.array_equal(t1, t2) and np.array_equal(x1, x2) and np.array_equal(r1, r2)
    assert len(set(single.x.tolist())) > 20


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_padded_block_that_spans_two_problems_leaks_nothing(dtype):
    """Padding lanes repeat a block's last run and are never written back; the one thing a block reads from them
    is whether its first and last lanes play the same stream. 40 runs, 35 on one problem and 5 on another: on
    one thread the block is all 40 (padded to 64), on two to four the last block is runs 32-39 (padded to 32);
    either way a padded block spans both problems. Padding copied from the first run would make it look like one
    stream, and the five runs of the second problem would play the first one's slopes."""
    runs = [FusedRun.of("adam" if i % 2 else "amsgrad", 0 if i < 35 else 1, lr=1e-2 * (1 + i % 3)) for i in range(40)]
    problems = [Stochastic(seed=1, dtype=dtype), Stochastic(seed=2, dtype=dtype)]
    (single, single_log), (lanes, lanes_log) = _both_kernels(problems, runs, 5_000, dtype)
    assert np.array_equal(single.x, lanes.x) and np.array_equal(single.average_regret, lanes.average_regret)
    for (_, x1, r1), (_, x2, r2) in zip(single_log, lanes_log, strict=True):
        assert np.array_equal(x1, x2) and np.array_equal(r1, r2)
    alone = simulate([problems[1]], [FusedRun.of("adam", 0, lr=1e-2)], 5_000, dtype=dtype)  # run 39, by itself
    assert lanes.x[39] == alone.x[0]  # the second problem's run played the second problem's stream


# --- what comes back from worker processes -----------------------------------------------------------------------

#: a task run in a worker with ``eval`` (a built-in, so it pickles by reference in any worker): it says it has
#: started, then works until the driver stops it or releases it, and returns what identifies it
_TASK = """
import pathlib, time
try:
    pathlib.Path(started).touch()  # inside the try: a stop right after it is still this task's to report
    deadline = time.monotonic() + 120  # a hang guard: a driver that never releases it fails the test, not hangs it
    while not pathlib.Path(release).exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    result = (key, "finished" if pathlib.Path(release).exists() else "never released")
except KeyboardInterrupt:
    result = (key, "stopped")
"""


def _job(key: str, directory: Path, release: str):
    ns = {"key": key, "started": str(directory / f"{key}.started"), "release": str(directory / release)}
    return key, ("exec(src, ns) or ns['result']", {"src": _TASK, "ns": ns})


def _wait_for(path: Path) -> None:
    import time

    deadline = time.monotonic() + 300  # a hang guard only
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def test_pool_results_come_in_completion_order_each_with_its_own_key(tmp_path):
    """Two tasks at once; "a" (submitted first) can finish only after the driver has received "b"'s result, so
    completion order is the reverse of submission order on any machine. Each result carries its key."""
    from amsgrad_repro.pool import Pool

    with Pool(2) as pool:
        results = pool.run(eval, [_job("a", tmp_path, "b.received"), _job("b", tmp_path, "go")])
        (tmp_path / "go").touch()  # "b" may finish now, "a" not yet
        got = []
        for key, outcome in results:
            got.append((key, outcome))
            if key == "b":
                (tmp_path / "b.received").touch()
    assert got == [("b", ("b", "finished")), ("a", ("a", "finished"))]


def test_the_pool_stop_maps_each_partial_result_to_its_run(tmp_path):
    """The stop delivered at a known point: after both running tasks said they had started."""
    import threading

    from amsgrad_repro.pool import Pool
    from amsgrad_repro.signals import handle_signals

    def stop_when_started() -> None:
        _wait_for(tmp_path / "a.started")
        _wait_for(tmp_path / "b.started")
        os.kill(os.getpid(), signal.SIGINT)

    got = []
    with handle_signals(), Pool(2) as pool:
        threading.Thread(target=stop_when_started, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            for key, outcome in pool.run(eval, [_job(k, tmp_path, "never") for k in ("a", "b", "c")]):
                got.append((key, outcome))
    assert sorted(got) == [("a", ("a", "stopped")), ("b", ("b", "stopped"))]
    assert not (tmp_path / "c.started").exists()


# --- each epoch's permutation ----------------------------------------------------------------------------------


def test_each_epoch_has_its_own_pinned_permutation():
    """The order of the samples in epochs 0, 1, 2 for seeds 0 and 1, as numpy's default_rng([seed, epoch]) gives
    them (written here, not recomputed), and the batches a run's loader serves across epoch boundaries."""
    from amsgrad_repro.realdata.trial import Batches, batch_indices, epoch_order

    pinned = {
        (0, 0): [4, 6, 2, 7, 3, 5, 9, 0, 8, 1],
        (0, 1): [9, 1, 3, 8, 7, 6, 0, 4, 2, 5],
        (0, 2): [8, 2, 1, 0, 5, 6, 7, 4, 3, 9],
        (1, 0): [8, 4, 7, 0, 1, 2, 5, 9, 6, 3],
        (1, 1): [7, 2, 4, 6, 1, 0, 3, 5, 9, 8],
        (1, 2): [8, 5, 6, 0, 9, 1, 4, 3, 7, 2],
    }
    for (seed, epoch), order in pinned.items():
        assert epoch_order(seed, epoch, 10).tolist() == order
    x, y = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1), np.arange(10)
    for seed in (0, 1):
        loader = Batches(x, y, batch_size=4, seed=seed)  # 2 full batches an epoch, 2 samples skipped
        served = [loader.indices(t).tolist() for t in range(1, 7)]
        expected = [pinned[seed, e][k * 4 : (k + 1) * 4] for e in range(3) for k in range(2)]
        assert served == expected == [batch_indices(seed, t, 10, 4).tolist() for t in range(1, 7)]
        assert torch.is_tensor(loader.indices(1))
