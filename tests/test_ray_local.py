"""--ray on a local Ray instance, started once for this module: every number and every TensorBoard scalar equals the
in-process run's, and a task that raises fails only its own run."""

import csv

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from amsgrad_repro.cli import main  # noqa: E402
from amsgrad_repro.cluster import Cluster, TaskFailed  # noqa: E402


@pytest.fixture(scope="module")
def cluster(ray_lock):
    """One local Ray instance for the module, started the way `--ray` (no address) starts one; the commands
    below find this process connected and use it."""
    with ray_lock(), Cluster.connect(None) as c:
        assert c.owned and c.cpus() >= 1
        yield c


def _both(tmp_path, argv):
    """The same command in this process and with --ray; returns the two run directories."""
    out = {}
    for name, extra in (("here", []), ("ray", ["--ray"])):
        code = main([*argv, "--logdir", str(tmp_path), "--run-name", name, "--no-progress", *extra])
        assert code == 0, name
        out[name] = name
    return out


def _same_runs(a: dict, b: dict, keys: list[str]) -> None:
    assert [r["name"] for r in a["runs"]] == [r["name"] for r in b["runs"]]
    for r, q in zip(a["runs"], b["runs"], strict=True):
        assert r["status"] == q["status"] == "complete"
        for key in keys:
            assert r[key] == q[key], (r["name"], key)  # exactly, not approximately


def _same_scalars(dir_a, dir_b, names, read_scalars) -> None:
    for name in names:
        a, b = read_scalars(dir_a / name), read_scalars(dir_b / name)
        assert a and a == b, name


def test_stochastic_seed_sweep_equals_in_process(cluster, tmp_path, read_summary, read_scalars):
    argv = ["stochastic", "--seed", "0:3", "--steps", "200000", "--log-every", "5000", "--gamma"]
    _both(tmp_path, argv)
    here, there = read_summary(tmp_path / "stochastic/here"), read_summary(tmp_path / "stochastic/ray")
    _same_runs(here, there, ["final_x", "average_regret", "steps_done", "gamma", "gamma_negative_steps"])
    assert there["config"]["ray"] == "connected" and there["runs"][0]["engine"] == "fused on ray"
    names = [r["name"] for r in here["runs"]]
    _same_scalars(tmp_path / "stochastic/here", tmp_path / "stochastic/ray", names, read_scalars)


def test_trial_engine_on_ray_equals_in_process(cluster, tmp_path, read_summary, read_scalars):
    argv = ["online", "--steps", "1500", "--log-every", "500", "--optimizers", "adam", "torch.optim.Adagrad,lr=0.01"]
    _both(tmp_path, [*argv, "--gamma"])
    here, there = read_summary(tmp_path / "online/here"), read_summary(tmp_path / "online/ray")
    _same_runs(here, there, ["final_x", "average_regret", "steps_done", "gamma", "gamma_negative_steps"])
    assert there["config"]["engine"] == "trial"
    _same_scalars(tmp_path / "online/here", tmp_path / "online/ray", [r["name"] for r in here["runs"]], read_scalars)


def test_phase_grid_equals_in_process(cluster, tmp_path):
    argv = ["phase", "--beta1", "0", "0.9", "4", "--beta2", "0.5", "0.999", "5", "--steps", "20000", "--gamma",
            "--verdict"]  # fmt: skip
    _both(tmp_path, argv)

    def rows(name):
        with open(tmp_path / "phase/online" / name / "phase.csv") as f:
            return list(csv.reader(f))

    assert len(rows("here")) == 21 and rows("here") == rows("ray") and rows("ray")[0][-1] == "verdict"


def test_mlp_grid_is_the_same_with_jobs_1_jobs_2_and_ray(cluster, tmp_path, read_summary, read_scalars):
    """The same 8-run grid one after another in this process (--jobs 1), two at a time in worker processes
    (--jobs 2) and as Ray tasks, all at the default one thread per run: equal to the bit."""
    argv = ["mlp", "--iterations", "40", "--log-every", "10", "--eval-every", "20", "--lr", "1e-3", "1e-2"]
    argv += ["--seed", "0", "1", "--logdir", str(tmp_path), "--no-progress", "--gamma"]
    for name, extra in (("jobs-1", ["--jobs", "1"]), ("jobs-2", ["--jobs", "2"]), ("ray", ["--ray"])):
        assert main([*argv, "--run-name", name, *extra]) == 0, name
    runs = {name: read_summary(tmp_path / "mlp" / name) for name in ("jobs-1", "jobs-2", "ray")}
    assert runs["jobs-1"]["config"]["jobs"] == 1 and runs["jobs-2"]["config"]["jobs"] == 2
    keys = ["final_train_loss", "final_test_loss", "final_test_accuracy", "iterations_done"]
    keys += ["gamma_negative_coordinates", "gamma_step_growth"]
    names = [r["name"] for r in runs["jobs-1"]["runs"]]
    for other in ("jobs-2", "ray"):
        _same_runs(runs["jobs-1"], runs[other], keys)
        _same_scalars(tmp_path / "mlp/jobs-1", tmp_path / "mlp" / other, names, read_scalars)


def test_a_task_that_raises_fails_only_its_run(cluster):
    def maybe_fail(k: int) -> int:  # nested, so Ray ships it by value (this test module is not importable there)
        if k == 2:
            raise ValueError("this run cannot")
        return k * k

    results = dict(cluster.run(maybe_fail, [(k, (k,)) for k in range(5)]))
    assert results[2] == TaskFailed("ValueError: this run cannot")
    assert {k: v for k, v in results.items() if k != 2} == {0: 0, 1: 1, 3: 9, 4: 16}


def test_phase_numbers_are_not_shuffled(cluster, tmp_path):
    """Cells come back in whatever order tasks finish; each lands in its own place."""
    from amsgrad_repro.synthetic.experiment import ProblemConfig
    from amsgrad_repro.synthetic.grid import beta1_grid, beta2_grid, run_grid

    b1, b2 = beta1_grid(0.0, 0.9, 3), beta2_grid(0.9, 0.999, 7)
    here = run_grid(ProblemConfig("online"), ["adam", "amsgrad"], b1, b2, 3000, {"lr": 1e-2})
    there = run_grid(ProblemConfig("online"), ["adam", "amsgrad"], b1, b2, 3000, {"lr": 1e-2}, cluster=cluster)
    np.testing.assert_array_equal(here.final_x, there.final_x)
    np.testing.assert_array_equal(here.regret, there.regret)
    assert not there.interrupted and not there.failed
