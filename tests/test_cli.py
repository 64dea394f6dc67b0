"""The command line end to end: TensorBoard layout read back with TensorBoard's reader, summary.json,
bad input, overwrite protection, Ctrl-C."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from amsgrad_repro.cli import main


@pytest.mark.parametrize("engine", ["fused", "trial"])
@pytest.mark.parametrize("setting", ["online", "stochastic"])
def test_end_to_end_events_and_summary(tmp_path, setting, engine, run_cli, read_scalars, read_summary):
    args = [setting, "--steps", 2300, "--log-every", 500, "--logdir", tmp_path, "--run-name", "r", "--engine", engine]
    proc = run_cli(args)
    assert proc.returncode == 0, proc.stderr
    assert f"engine: {engine}" in proc.stdout
    run_dir = tmp_path / setting / "r"
    summary = read_summary(run_dir)
    assert summary["setting"] == setting and summary["steps"] == 2300 and summary["x_star"] == -1.0
    assert summary["config"]["engine"] == engine and not summary["interrupted"]
    assert [r["name"] for r in summary["runs"]] == ["adam", "amsgrad"]
    for run in summary["runs"]:
        scalars = read_scalars(run_dir / run["name"])
        assert set(scalars) == {"x", "average_regret"}
        for tag in ("x", "average_regret"):
            assert [step for step, _ in scalars[tag]] == [500, 1000, 1500, 2000, 2300]
        # TensorBoard stores float32: the summary is the last logged value
        assert scalars["x"][-1][1] == pytest.approx(run["final_x"], rel=1e-6, abs=1e-7)
        assert scalars["average_regret"][-1][1] == pytest.approx(run["average_regret"], rel=1e-6)
        assert run["steps_done"] == 2300 and run["status"] == "complete"
        assert run["name"] in proc.stdout
    # both engines agree on the numbers
    assert -1.0 <= summary["runs"][0]["final_x"] <= 1.0


@pytest.mark.parametrize(("dtype", "tolerance"), [("float32", 1e-6), ("float64", 1e-13)])
def test_engines_agree_through_the_cli(tmp_path, read_summary, dtype, tolerance):
    for engine in ("fused", "trial"):
        argv = ["online", "--steps", "3000", "--logdir", str(tmp_path), "--run-name", engine, "--engine", engine]
        assert main([*argv, "--no-progress", "--lr", "0.01", "--dtype", dtype]) == 0
    fused, trial = read_summary(tmp_path / "online/fused"), read_summary(tmp_path / "online/trial")
    assert fused["config"]["problem"]["dtype"] == trial["config"]["problem"]["dtype"] == dtype
    for a, b in zip(fused["runs"], trial["runs"], strict=True):
        assert abs(a["final_x"] - b["final_x"]) <= tolerance
        assert abs(a["average_regret"] - b["average_regret"]) <= tolerance
    if dtype == "float64":  # float64 iterates, not float32 ones in a float64 container
        assert any(r["final_x"] != float(np.float32(r["final_x"])) for r in fused["runs"] + trial["runs"])


BAD = [
    (["online", "--steps", "0"], "--steps"),
    (["online", "--steps", "-5"], "--steps"),
    (["online", "--steps", "abc"], "--steps"),
    (["online", "--lr", "0"], "--lr"),
    (["online", "--lr", "-1e-3"], "--lr"),
    (["online", "--lr", "nan"], "--lr"),
    (["online", "--betas", "1.0", "0.99"], "--betas"),
    (["online", "--betas", "0.9", "-0.1"], "--betas"),
    (["online", "--eps", "-1e-8"], "--eps"),
    (["stochastic", "--probability", "1.5"], "--probability"),
    (["stochastic", "--probability", "-0.01"], "--probability"),
    (["online", "--optimizers", "adam", "nosuch"], "nosuch"),
    (["online", "--optimizers", "adam", "adam"], "repeated"),
    (["online", "--log-every", "0"], "--log-every"),
    (["online", "--engine", "fused", "--optimizers", "torch.optim.SGD"], "fused engine"),
    (["online", "--period", "1"], "period"),
    (["online", "--x0", "3"], "x0"),
    (["online", "--run-name", "a/b"], "--run-name"),
    (["stochastic", "--seed", "-1"], "--seed"),
    (["stochastic", "--seed", "5:2"], "empty seed range"),
    (["online", "--optimizers", "amsgrad", "amsgrad-pytorch"], "repeated name"),
    (["online", "--C", "5"], "--C does not apply to preset paper"),
    (["stochastic", "--delta", "0.1"], "--delta does not apply to preset paper"),
    (["online", "--preset", "theorem1", "--delta", "0.1"], "--delta"),
    (["online", "--beta1-decay", "0.5"], "only with beta1_schedule=exp"),
    (["online", "--beta1-schedule", "inverse", "--beta1-decay", "0.5"], "only with beta1_schedule=exp"),
    (["online", "--steps", "1e30"], "too large"),
    (["online", "--period", "99999999999999999999"], "too large"),
    (["online", "--preset", "theorem2", "--C", "1e308"], "--C must be finite"),
    (["online", "--optimizers", "torch.optim.SGD,lr=0.1,momentum=2"], "momentum"),
    (["phase", "--optimizers", "adam,beta1=0.5"], "a spec cannot fix them"),
    (["phase", "--C", "7"], "--C does not apply"),
    (["online", "--optimizers", "sgd", "--betas", "0.9", "0.999"], "--betas applies to none"),
    (["online", "--optimizers", "adam", "--momentum", "0.5"], "--momentum applies to none"),
    (["online", "--dtype", "float16"], "--dtype"),
    (["phase", "--dtype", "half"], "--dtype"),
    (["stochastic", "--ray", "127.0.0.1:1"], "--ray"),
    (["mlp", "--ray", "nosuchhost"], "--ray"),
    (["phase", "--ray", "--ray-timeout", "0"], "--ray-timeout"),
    (["mlp", "--ray", "--threads", "64"], "no node of the cluster has that much"),
    (["nosuch"], "invalid choice"),
]


@pytest.mark.parametrize(("argv", "says"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, says, ray_lock):
    logdir = tmp_path / "logs"
    code = None
    try:
        with ray_lock() if "--ray" in argv else contextlib.nullcontext():  # it may start a local Ray
            code = main([*argv, "--logdir", str(logdir), "--no-progress"] if argv[0] != "nosuch" else argv)
    except SystemExit as e:  # argparse errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert says in err and "Traceback" not in err
    assert not logdir.exists()  # nothing written


def test_negative_numbers_in_scientific_notation_are_values(tmp_path, read_summary):
    argv = ["online", "--steps", "100", "--x0", "-1e-3", "--bounds", "-2e0", "1", "--logdir", str(tmp_path)]
    assert main([*argv, "--run-name", "neg", "--no-progress"]) == 0
    problem = read_summary(tmp_path / "online/neg")["config"]["problem"]
    assert problem["x0"] == -0.001 and problem["bounds"] == [-2.0, 1.0]


def test_unwritable_logdir(tmp_path, run_cli):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    proc = run_cli(["online", "--steps", "10", "--logdir", blocker / "logs"])
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert "cannot write" in proc.stderr
    assert blocker.read_text() == "not a directory"


def test_existing_run_is_left_untouched_unless_overwrite(tmp_path, capsys, read_summary):
    args = ["online", "--steps", "200", "--logdir", str(tmp_path), "--run-name", "keep", "--no-progress"]
    assert main(args) == 0
    run_dir = tmp_path / "online/keep"
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main([*args, "--steps", "300"]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and len(err.strip().splitlines()) == 1
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before
    assert main([*args, "--steps", "300", "--overwrite"]) == 0
    assert read_summary(run_dir)["steps"] == 300
    after = set((run_dir / "adam").iterdir())
    assert not after & {p for p in before if p.parent == run_dir / "adam"}  # the old events are gone, not mixed in
    assert len(after) == 2  # the new run's scalars, and its HParams session (docs/tensorboard.md)


def test_default_run_names_never_collide(tmp_path):
    args = ["online", "--steps", "50", "--logdir", str(tmp_path), "--no-progress"]
    assert main(args) == 0 and main(args) == 0
    assert len(list((tmp_path / "online").iterdir())) == 2


@pytest.mark.parametrize("setting", ["online", "stochastic"])
def test_help_gives_every_default(setting):
    proc = subprocess.run([sys.executable, "-m", "amsgrad_repro", setting, "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    expected = [
        ("--steps", "10000000"),
        ("--lr", "each optimizer's own, 0.001"),
        ("--betas", "0.9 0.99"),
        ("--eps", "each optimizer's own"),
        ("--optimizers", "adam amsgrad"),
        ("--preset", "paper"),
        ("--log-every", "1000"),
        ("--logdir", "logs"),
        ("--engine", "auto"),
        ("--x0", "0.0"),
    ]
    expected.append(("--seed", "0"))
    for flag, default in expected:
        assert flag in text
        assert f"(default: {default}" in text, flag
    for name in (
        "sgd",
        "momentum",
        "nesterov",
        "adagrad",
        "rmsprop",
        "adamax",
        "nadam",
        "amsgrad-paper",
        "amsgrad-pytorch",
        "amsgrad-corrected",
        "adamnc",
    ):
        assert name in text


def test_console_script_is_installed():
    exe = shutil.which("amsgrad-repro", path=os.path.dirname(sys.executable))
    assert exe is not None
    proc = subprocess.run([exe, "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "online" in proc.stdout and "stochastic" in proc.stdout


@pytest.mark.parametrize("engine", ["trial", "fused"])
def test_ctrl_c_leaves_readable_events_and_a_summary(tmp_path, engine, read_scalars, read_summary, spawn):
    steps = "50000000" if engine == "trial" else "20000000000"
    proc = spawn(
        [
            sys.executable,
            "-m",
            "amsgrad_repro",
            "online",
            "--steps",
            steps,
            "--logdir",
            str(tmp_path),
            "--run-name",
            "cut",
            "--engine",
            engine,
            "--log-every",
            "500",
            "--allow-large",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run_dir = tmp_path / "online/cut"
    deadline = time.time() + 600  # a hang guard only
    while time.time() < deadline and not any((run_dir / "adam").glob("events.*")):
        time.sleep(0.2)

    # the event, not a time: a logged step is on disk. The Trial writes and flushes as it goes; the fused engine
    # creates its event files before its first window (so their existence is not enough) and then writes points
    # so fast (~100 MB/s here) that parsing the file to look would never catch up: its size says it instead
    def stepped() -> bool:
        if engine == "trial":
            return "x" in read_scalars(run_dir / "adam")
        return sum(f.stat().st_size for f in (run_dir / "adam").glob("events.*")) > 64 * 1024

    while time.time() < deadline and not stepped():
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted at step" in out
    summary = read_summary(run_dir)
    assert summary["interrupted"] and summary["status"] == "interrupted" and summary["stopped_by"] == "SIGINT"
    # every planned run is listed: the one cut with where it stopped, the ones after it as not started
    assert [r["name"] for r in summary["runs"]] == ["adam", "amsgrad"]
    cut = next(r for r in summary["runs"] if r["status"] == "interrupted")
    assert 0 < cut["steps_done"] < int(steps)
    if engine == "trial":  # one run at a time: the ones after the cut never started
        later = summary["runs"][summary["runs"].index(cut) + 1 :]
        assert all(r["status"] == "not started" and r["steps_done"] == 0 and r["final_x"] is None for r in later)
    else:  # one kernel call runs both: both stopped at the same window boundary
        assert [(r["status"], r["steps_done"]) for r in summary["runs"]] == [("interrupted", cut["steps_done"])] * 2
    scalars = read_scalars(run_dir / cut["name"])
    assert scalars["x"][-1][0] == cut["steps_done"]
    assert scalars["x"][-1][1] == pytest.approx(cut["final_x"], rel=1e-6, abs=1e-7)
    assert scalars["average_regret"][-1][1] == pytest.approx(cut["average_regret"], rel=1e-6)
    json.dumps(summary)


def test_a_closed_pipe_is_not_a_traceback(tmp_path):
    cmd = f"{sys.executable} -m amsgrad_repro online --steps 2000 --logdir {tmp_path} --no-progress | head -1"
    proc = subprocess.run(["bash", "-c", f"set -o pipefail; {cmd}"], capture_output=True, text=True, timeout=120)
    assert proc.stdout.startswith("amsgrad_repro online")
    assert proc.returncode == 141 and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("command", ["stochastic", "phase", "mlp"])
def test_ray_flag_without_ray_installed_is_one_line_and_exit_2(tmp_path, command):
    """Ray made unimportable (as if the extra were not installed): one line naming the extra, nothing written."""
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "from amsgrad_repro.cli import main\n"
        f"sys.exit(main([{command!r}, '--ray', '--logdir', {str(tmp_path / 'logs')!r}, '--no-progress']))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "pip install -e '.[ray]'" in proc.stderr, proc.stderr
    assert not (tmp_path / "logs").exists()
