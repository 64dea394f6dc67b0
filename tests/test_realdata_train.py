"""Real-data models and training: docstring numbers, α/√t, identical starts, lockstep against a plain torch loop,
the commands end to end (TensorBoard read back, summary = last logged values, reruns bit-identical), the grid,
bad input, and a SIGTERM mid-grid."""

import json
import math
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchbearer

from amsgrad_repro.cli import main
from amsgrad_repro.realdata.data import embedded
from amsgrad_repro.realdata.models import (
    MLP,
    ChannelLRN,
    CIFARNet,
    LogisticRegression,
    build_model,
    parameter_count,
    to_input,
)
from amsgrad_repro.realdata.trial import Batches, SqrtDecay, batch_indices, build_trial

DATA = embedded()


def _docstring_counts(cls) -> list[int]:
    return [int(n.replace(",", "")) for n in re.findall(r"\*\*([\d,]+)\*\*", cls.__doc__)]


@pytest.mark.parametrize(
    ("cls", "shapes"),
    [
        (LogisticRegression, [(1, 28, 28)]),
        (MLP, [(1, 28, 28)]),
        (CIFARNet, [(3, 32, 32), (1, 28, 28)]),
    ],
)
def test_parameter_counts_and_shapes_are_the_docstrings(cls, shapes):
    assert len(_docstring_counts(cls)) == len(shapes)
    for shape, documented in zip(shapes, _docstring_counts(cls), strict=True):
        model = cls(shape)
        assert parameter_count(model) == documented
        assert model(torch.zeros(3, *shape)).shape == (3, 10)


def test_cifarnet_keeps_size_through_same_padding():
    model = CIFARNet((3, 32, 32))
    assert model.features(torch.zeros(1, 3, 32, 32)).shape == (1, 64, 8, 8)


@pytest.mark.parametrize(("channels", "size"), [(64, 9), (5, 9), (3, 1), (16, 5)])
def test_the_channel_lrn_is_torchs_local_response_norm_within_float32_rounding(channels, size):
    """Forward and gradient, on values large enough that the normaliser is far from 1 (k + a/n·Σx² up to ~7),
    with a window wider than the channels (5 and 3 channels) so that the edges' zero padding is exercised."""
    torch.manual_seed(0)
    x = (torch.randn(4, channels, 6, 7) * 30).requires_grad_()
    g = torch.randn(4, channels, 6, 7)
    ours, theirs = ChannelLRN(channels, size, 0.001, 0.75, 1.0), torch.nn.LocalResponseNorm(size, 0.001, 0.75, 1.0)
    (a,) = torch.autograd.grad(ours(x), x, g)
    (b,) = torch.autograd.grad(theirs(x), x, g)
    torch.testing.assert_close(ours(x), theirs(x), rtol=4e-6, atol=1e-6)
    torch.testing.assert_close(a, b, rtol=4e-6, atol=1e-6)
    assert not torch.equal(ours(x), x)  # the normaliser is not 1 here: the test can tell them apart
    for channels_last in (x.contiguous(memory_format=torch.channels_last),):
        torch.testing.assert_close(ours(channels_last), theirs(x), rtol=4e-6, atol=1e-6)
    with pytest.raises(ValueError, match="odd"):
        ChannelLRN(8, 4, 0.001, 0.75, 1.0)
    # the written-out backward pass against finite differences, in float64 (alpha large: d far from k)
    wide = ChannelLRN(channels, size, 3.0, 0.75, 1.0).double()
    assert torch.autograd.gradcheck(wide, (torch.randn(2, channels, 3, 2, dtype=torch.float64, requires_grad=True),))


def test_cifarnet_is_the_plain_layers_it_documents():
    """The fast path (channels-last, :class:`ChannelLRN`) against the same weights in torch's own modules,
    contiguous: logits and every gradient within float32 rounding, and the state_dict has only the weights."""
    fast = build_model("cifarnet", (3, 32, 32), 3)
    plain = torch.nn.Sequential(
        torch.nn.ZeroPad2d((2, 3, 2, 3)), torch.nn.Conv2d(3, 64, 6), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.LocalResponseNorm(9, 0.001, 0.75, 1.0), torch.nn.ZeroPad2d((2, 3, 2, 3)), torch.nn.Conv2d(64, 64, 6),
        torch.nn.ReLU(), torch.nn.LocalResponseNorm(9, 0.001, 0.75, 1.0), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
        torch.nn.Linear(4096, 384), torch.nn.ReLU(), torch.nn.Linear(384, 192), torch.nn.ReLU(),
        torch.nn.Linear(192, 10),
    )  # fmt: skip
    fast.eval()  # no dropout: the plain stack has none
    weights = {k: v.contiguous() for k, v in fast.state_dict().items()}
    assert len(weights) == 10
    plain.load_state_dict(dict(zip(plain.state_dict(), weights.values(), strict=True)))
    x = to_input(torch.from_numpy(np.random.default_rng(0).integers(0, 256, (8, 3, 32, 32), dtype=np.uint8)))
    y = torch.arange(8) % 10
    torch.testing.assert_close(fast(x), plain(x), rtol=1e-5, atol=1e-6)
    F.cross_entropy(fast(x), y).backward()
    F.cross_entropy(plain(x), y).backward()
    for p, q in zip(fast.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6)


def test_initial_weights_and_batches_are_pure_functions_of_the_seed():
    a, b, c = (build_model("mlp", (1, 28, 28), s) for s in (3, 3, 4))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(next(a.parameters()), next(c.parameters()))
    batches = Batches(DATA.x_train, DATA.y_train, 128, seed=5)
    for t in (1, 2, 31, 32, 33, 100):
        assert torch.equal(batches.indices(t), torch.from_numpy(batch_indices(5, t, 4000, 128)))
    # an epoch is a permutation of the training set, minus the n mod B samples that do not fill a batch
    epoch = np.concatenate([batch_indices(5, t, 4000, 128) for t in range(1, 32)])
    assert len(set(epoch.tolist())) == 31 * 128 and not np.array_equal(epoch, batch_indices(6, 1, 4000, 128))


def test_sqrt_decay_is_exact_at_the_first_iterations():
    model = build_model("logreg", (1, 28, 28), 0)
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    seen = []

    class Record(torchbearer.Callback):
        def on_sample(self, state):
            seen.append(state[torchbearer.OPTIMIZER].param_groups[0]["lr"])

    batches = Batches(DATA.x_train, DATA.y_train, 16, 0)
    build_trial(model, opt, batches, 10, [SqrtDecay(), Record()]).run()
    assert seen == [0.03 / math.sqrt(t) for t in range(1, 11)]
    assert seen[0] == 0.03 and seen[3] == 0.015


def _plain_loop(model, opt, seed, steps, sqrt_alpha=None):
    """The reference, written here without torchbearer: per-step losses and the final parameters."""
    x, y = torch.from_numpy(DATA.x_train), torch.from_numpy(DATA.y_train)
    losses = []
    for t in range(1, steps + 1):
        if sqrt_alpha is not None:
            for g in opt.param_groups:
                g["lr"] = sqrt_alpha / math.sqrt(t)
        idx = torch.from_numpy(batch_indices(seed, t, len(y), 128))
        opt.zero_grad()
        loss = F.cross_entropy(model(x[idx].float() / 255), y[idx])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize(
    ("model_name", "make", "sqrt_alpha"),
    [
        ("mlp", lambda p: torch.optim.Adam(p, lr=1e-3, betas=(0.9, 0.99)), None),
        ("mlp", lambda p: torch.optim.Adam(p, lr=1e-3, betas=(0.9, 0.99), amsgrad=True), None),
        ("logreg", lambda p: torch.optim.Adam(p, lr=1e-2, betas=(0.9, 0.99), amsgrad=True), 1e-2),
    ],
    ids=["mlp-adam", "mlp-amsgrad", "logreg-amsgrad-sqrt"],
)
def test_trial_equals_a_plain_loop_exactly_at_every_step(model_name, make, sqrt_alpha):
    steps = 40
    ref_model = build_model(model_name, (1, 28, 28), 7)
    ref_losses = _plain_loop(ref_model, make(ref_model.parameters()), 7, steps, sqrt_alpha)
    model = build_model(model_name, (1, 28, 28), 7)
    losses, params = [], []

    class Record(torchbearer.Callback):
        def on_step_training(self, state):
            losses.append(state[torchbearer.LOSS].item())
            params.append([p.detach().clone() for p in model.parameters()])

    callbacks = ([SqrtDecay()] if sqrt_alpha else []) + [Record()]
    build_trial(model, make(model.parameters()), Batches(DATA.x_train, DATA.y_train, 128, 7), steps, callbacks).run()
    assert losses == ref_losses  # bit for bit, every step
    assert all(torch.equal(p, q) for p, q in zip(params[-1], ref_model.parameters(), strict=True))
    assert to_input(torch.tensor([255], dtype=torch.uint8)).item() == 1.0


# --- the commands end to end ----------------------------------------------------------------------------


COMMANDS = {
    "logreg": ["logreg", "--iterations", "60", "--log-every", "10", "--eval-every", "25"],
    "mlp": ["mlp", "--iterations", "60", "--log-every", "10", "--eval-every", "25"],
    "cifarnet": ["cifarnet", "--iterations", "6", "--batch-size", "8", "--log-every", "2", "--eval-every", "4"],
}


@pytest.mark.parametrize("model", list(COMMANDS))
def test_end_to_end_events_summary_and_bit_identical_rerun(tmp_path, model, tiny_cifar, read_scalars, read_summary):
    argv = [*COMMANDS[model], "--logdir", str(tmp_path), "--no-progress"]
    if model == "cifarnet":
        argv += ["--data-dir", str(tiny_cifar), "--threads", "1"]
    assert main([*argv, "--run-name", "a"]) == 0
    assert main([*argv, "--run-name", "b"]) == 0
    a, b = read_summary(tmp_path / model / "a"), read_summary(tmp_path / model / "b")
    steps = int(argv[argv.index("--iterations") + 1])
    log_every = int(argv[argv.index("--log-every") + 1])
    eval_every = int(argv[argv.index("--eval-every") + 1])
    assert a["model"] == model and a["status"] == "complete" and a["iterations"] == steps
    assert a["data"]["name"] == ("cifar10" if model == "cifarnet" else "mnist") and len(a["data"]["sha256"]) == 64
    assert [r["name"] for r in a["runs"]] == ["adam", "amsgrad"]
    for run in a["runs"]:
        assert run["status"] == "complete" and run["iterations_done"] == steps
        scalars = read_scalars(tmp_path / model / "a" / run["name"])
        assert set(scalars) == {"train_loss", "test_loss", "test_accuracy"}
        assert [s for s, _ in scalars["train_loss"]] == [*range(log_every, steps + 1, log_every)]
        evals = sorted({*range(eval_every, steps + 1, eval_every), steps})
        assert [s for s, _ in scalars["test_loss"]] == evals == [s for s, _ in scalars["test_accuracy"]]
        # summary.json = the last logged values (TensorBoard stores float32)
        assert scalars["train_loss"][-1][1] == pytest.approx(run["final_train_loss"], rel=1e-6)
        assert scalars["test_loss"][-1][1] == pytest.approx(run["final_test_loss"], rel=1e-6)
        assert scalars["test_accuracy"][-1][1] == pytest.approx(run["final_test_accuracy"], rel=1e-6)
        assert run["test_evaluated_at"] == steps
        # the same seed again: bit-identical numbers, in the summary and in every event
        twin = next(r for r in b["runs"] if r["name"] == run["name"])
        for key in ("final_train_loss", "final_test_loss", "final_test_accuracy"):
            assert run[key] == twin[key]
        assert read_scalars(tmp_path / model / "b" / run["name"]) == scalars
    assert a["best"]["adam"]["names"] == ["adam"]


def test_every_optimizer_starts_from_the_same_weights_and_sees_the_same_batches(tmp_path, read_scalars):
    # a step of 1e-30 cannot move a float32 weight, so each loss depends on the initial weights and batch t only
    argv = ["mlp", "--iterations", "40", "--log-every", "1", "--eval-every", "40", "--logdir", str(tmp_path)]
    argv += ["--run-name", "same", "--no-progress", "--optimizers", "sgd", "momentum", "--lr", "1e-30"]
    assert main(argv) == 0
    sgd = read_scalars(tmp_path / "mlp/same/sgd")["train_loss"]
    momentum = read_scalars(tmp_path / "mlp/same/momentum")["train_loss"]
    assert len(sgd) == 40 and sgd == momentum
    assert len({v for _, v in sgd}) > 30  # and the batches do differ from one iteration to the next


def test_the_grid_names_cells_and_best(tmp_path, read_summary, capsys):
    argv = ["logreg", "--iterations", "12", "--log-every", "4", "--eval-every", "12", "--logdir", str(tmp_path)]
    argv += ["--run-name", "grid", "--no-progress", "--optimizers", "adam", "amsgrad-paper", "sgd"]
    argv += ["--lr", "1e-3:1e-1:2", "--beta2", "0.99", "0.999", "--seed", "0:2"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    s = read_summary(tmp_path / "logreg/grid")
    names = [r["name"] for r in s["runs"]]
    # adam and amsgrad-paper: 2 lr × 2 β2 × 2 seeds; sgd has no β2: 2 lr × 2 seeds
    assert len(names) == 8 + 8 + 4 and "adam/lr=0.001/beta2=0.999/seed=1" in names and "sgd/lr=0.1/seed=0" in names
    assert all((tmp_path / "logreg/grid" / n).is_dir() for n in names)
    assert len(s["cells"]) == 4 + 4 + 2 and all(c["complete"] == c["runs"] == 2 for c in s["cells"])
    for cell in s["cells"]:
        runs = [r for r in s["runs"] if r["name"] in cell["names"]]
        losses = [r["final_train_loss"] for r in runs]
        assert cell["final_train_loss"] == pytest.approx(np.mean(losses))
        assert cell["final_train_loss_sd"] == pytest.approx(np.std(losses, ddof=1))
    for optimizer, best in s["best"].items():
        mine = [c for c in s["cells"] if c["optimizer"] == optimizer]
        assert best["final_train_loss"] == min(c["final_train_loss"] for c in mine)
    # amsgrad-paper runs with ε = 1e-8 on real data (0/√0 would be NaN on MNIST's blank pixels)
    paper = next(r for r in s["runs"] if r["optimizer"] == "amsgrad-paper")
    assert paper["hyperparameters"]["eps"] == 1e-8 and math.isfinite(paper["final_train_loss"])
    assert out.count("*") == 3 and "± " in out
    json.dumps(s, allow_nan=False)


BAD = [
    (["mlp", "--iterations", "0"], "--iterations"),
    (["mlp", "--batch-size", "0"], "--batch-size"),
    (["mlp", "--batch-size", "5000"], "larger than the training set (4,000)"),
    (["mlp", "--eval-every", "0"], "--eval-every"),
    (["mlp", "--log-every", "0"], "--log-every"),
    (["mlp", "--data", "svhn"], "invalid choice"),
    (["mlp", "--data", "cifar10", "--data-dir", "."], "no cifar10 data in"),
    (["mlp", "--data-dir", "/nonexistent"], "is not a directory"),
    (["mlp", "--lr", "0"], "--lr"),
    (["mlp", "--beta2", "1.0"], "--beta2"),
    (["mlp", "--beta1", "-0.1"], "--beta1"),
    (["mlp", "--optimizers", "amsgrad", "amsgrad-pytorch"], "names one optimizer twice"),
    (["mlp", "--optimizers", "adam,lr_schedule=sqrt"], "--lr-schedule"),
    (["mlp", "--optimizers", "torch.optim.LBFGS"], "cannot run here"),
    (["mlp", "--seed", "5:2"], "empty seed range"),
    (["mlp", "--threads", "0"], "--threads"),
    (["mlp", "--optimizers", "sgd", "momentum", "--beta2", "0.999"], "--beta2 applies to none"),
    (["mlp", "--optimizers", "torch.optim.SGD", "--eps", "1e-6"], "--eps applies to none"),
    (["vgg"], "invalid choice"),
]
if not torch.cuda.is_available():
    BAD.append((["mlp", "--device", "cuda"], "no CUDA"))


@pytest.mark.parametrize(("argv", "says"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, argv, says):
    logdir = tmp_path / "logs"
    try:
        code = main([*argv, "--logdir", str(logdir), "--no-progress"])
    except SystemExit as e:  # argparse
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and says in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not logdir.exists()


def test_help_shows_every_default():
    proc = subprocess.run([sys.executable, "-m", "amsgrad_repro", "logreg", "--help"], capture_output=True, text=True)
    text = " ".join(proc.stdout.split())
    for flag, default in [("--iterations", "3000"), ("--lr", "0.01"), ("--lr-schedule", "sqrt"), ("--seed", "0"),
                          ("--batch-size", "128"), ("--eval-every", "250"), ("--log-every", "50"),
                          ("--data", "mnist"), ("--device", "auto"), ("--optimizers", "adam amsgrad")]:  # fmt: skip
        assert f"(default: {default})" in text[text.index(flag) :], flag


def test_sigterm_mid_grid_keeps_finished_runs_and_says_where_it_stopped(tmp_path, read_scalars, read_summary, spawn):
    argv = ["mlp", "--iterations", "1000000", "--log-every", "20", "--eval-every", "100000", "--jobs", "1"]
    argv += ["--logdir", str(tmp_path), "--run-name", "cut", "--optimizers", "adam", "amsgrad", "sgd"]
    proc = spawn([sys.executable, "-m", "amsgrad_repro", *argv], stdout=subprocess.PIPE, text=True)
    run_dir = tmp_path / "mlp/cut"
    deadline = time.time() + 600  # a hang guard only
    while time.time() < deadline and not (
        any(run_dir.glob("adam/events.*")) and "train_loss" in read_scalars(run_dir / "adam")
    ):  # the event (an iteration logged and flushed), not a time
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143
    s = read_summary(run_dir)
    assert s["status"] == "interrupted" and s["stopped_by"] == "SIGTERM"
    assert [r["status"] for r in s["runs"]] == ["interrupted", "not started", "not started"]
    cut = s["runs"][0]
    scalars = read_scalars(run_dir / "adam")
    assert scalars["train_loss"][-1][0] == cut["iterations_done"] > 0
    assert scalars["train_loss"][-1][1] == pytest.approx(cut["final_train_loss"], rel=1e-6)
    assert "interrupted" in out


def test_figure_2_from_real_runs_and_damaged_run_directories(tmp_path, capsys):
    argv = ["logreg", "--iterations", "30", "--log-every", "5", "--eval-every", "10", "--logdir", str(tmp_path)]
    assert main([*argv, "--run-name", "fig", "--no-progress", "--seed", "0:2", "--lr", "1e-2", "1e-1"]) == 0
    run_dir = tmp_path / "logreg/fig"
    assert main(["plot", str(run_dir), "--out", str(tmp_path / "fig2")]) == 0
    png, svg = (tmp_path / "fig2.png").read_bytes(), (tmp_path / "fig2.svg").read_text()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    best = json.loads((run_dir / "summary.json").read_text())["best"]
    for optimizer, cell in best.items():  # the legend names optimizer, variant, lr and β2 of the best cell
        label = {"adam": "Adam", "amsgrad": "AMSGrad (PyTorch variant)"}[optimizer]
        assert f"{label}, lr={cell['lr']:g}, β2=0.99; mean ± sd over 2 seeds" in svg
    assert main(["plot", str(run_dir), "--cells", "all", "--out", str(tmp_path / "all")]) == 0
    capsys.readouterr()

    # a synthetic run directory cannot be mixed in
    assert main(["online", "--steps", "100", "--logdir", str(tmp_path), "--run-name", "o", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["plot", str(run_dir), str(tmp_path / "online/o")]) == 2
    assert "either synthetic" in capsys.readouterr().err

    # truncated events in a run that is drawn: the run is named, no traceback
    damaged = best["adam"]["names"][1]
    events = max((run_dir / damaged).glob("events.*"), key=lambda p: p.stat().st_size)  # the scalars' file
    events.write_bytes(events.read_bytes()[:-60])
    assert main(["plot", str(run_dir), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert damaged in err and "truncated or damaged" in err and len(err.strip().splitlines()) == 1

    # summary.json that is not JSON, or not a summary
    for text, says in (("{not json", "is not valid JSON"), ("[1, 2]", "is not a run summary")):
        (run_dir / "summary.json").write_text(text)
        assert main(["plot", str(run_dir)]) == 2
        err = capsys.readouterr().err
        assert says in err and "summary.json" in err and "Traceback" not in err


def test_every_optimizer_of_the_zoo_trains(tmp_path, read_summary):
    from amsgrad_repro.optimizers import ZOO

    names = [*ZOO, "torch.optim.RMSprop"]
    argv = ["mlp", "--iterations", "15", "--log-every", "5", "--eval-every", "15", "--logdir", str(tmp_path)]
    assert main([*argv, "--run-name", "zoo", "--no-progress", "--optimizers", *names]) == 0
    runs = read_summary(tmp_path / "mlp/zoo")["runs"]
    assert [r["name"] for r in runs] == names
    for r in runs:
        assert r["status"] == "complete" and math.isfinite(r["final_train_loss"]) and r["final_train_loss"] < 2.4, r


def _children(pid: int) -> set[int]:
    """Every descendant of ``pid`` now (from /proc)."""
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = {int(k) for k in (task / "children").read_text().split()}
            except OSError:
                continue
            todo += list(kids - found)
            found |= kids
    return found


def _workers(pid: int) -> set[int]:
    """The pool's worker processes under the driver ``pid``: the descendants whose parent is not the driver."""
    out = set()
    for child in _children(pid):
        try:
            if int(Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[1]) != pid:
                out.add(child)
        except (OSError, ValueError, IndexError):
            continue
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _running_past(runs: int, past: int):
    """A test of a bar's text: its postfix says ``runs`` runs are running, the least advanced past iteration
    ``past`` (:func:`amsgrad_repro.realdata.engines.show_running`)."""
    pattern = re.compile(r"(\d+) running, at iterations? ([\d,]+)")
    return lambda text: any(int(m[1]) >= runs and int(m[2].replace(",", "")) > past for m in pattern.finditer(text))


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_with_jobs_keeps_the_running_runs_and_leaves_no_worker(tmp_path, read_scalars, read_summary,
                                                                          signum, code, spawn,
                                                                          wait_for_bar):  # fmt: skip
    """--jobs 2: two runs in worker processes, a third waiting. A signal to the driver alone interrupts both
    running runs, which come back with what they have (events to the iteration they reached), the third is not
    started, and no worker (nor the forkserver) outlives the driver."""
    argv = ["mlp", "--iterations", "1000000", "--log-every", "20", "--eval-every", "100000", "--jobs", "2"]
    argv += ["--logdir", str(tmp_path), "--run-name", "cut", "--optimizers", "adam", "amsgrad", "sgd", "--progress"]
    proc = spawn([sys.executable, "-m", "amsgrad_repro", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                 text=True)  # fmt: skip
    # the event, not a time (a fixed 5 s failed beside busy processes, and "2 s of a worker's CPU" on a quiet
    # machine: a worker's start takes about that long): the bar says both running runs are past iteration 40
    err = wait_for_bar(proc, _running_past(2, 40), guard=600)
    workers = _children(proc.pid)
    proc.send_signal(signum)
    assert proc.wait(timeout=300) == code, err()
    out = proc.stdout.read()
    assert "2 runs at once in worker processes" in out and "interrupted at iteration" in out
    s = read_summary(tmp_path / "mlp/cut")
    assert s["status"] == "interrupted" and s["stopped_by"] == signal.Signals(signum).name
    assert [r["status"] for r in s["runs"]] == ["interrupted", "interrupted", "not started"]
    for r in s["runs"][:2]:
        scalars = read_scalars(tmp_path / "mlp/cut" / r["name"])
        assert scalars["train_loss"][-1][0] == r["iterations_done"] > 0
        assert scalars["train_loss"][-1][1] == pytest.approx(r["final_train_loss"], rel=1e-6)
    stop = time.time() + 30
    while any(_alive(pid) for pid in workers) and time.time() < stop:
        time.sleep(0.2)
    assert workers and not any(_alive(pid) for pid in workers)


def test_jobs_change_no_number(tmp_path, read_scalars, read_summary):
    """A logreg grid one run after another in this process and three at a time in worker processes: the same
    summary numbers and the same events, to the bit (tests/test_ray_local.py adds --ray to the comparison)."""
    argv = ["logreg", "--iterations", "30", "--log-every", "5", "--eval-every", "10", "--lr", "0.1", "0.01"]
    argv += ["--seed", "0", "1", "--logdir", str(tmp_path), "--no-progress"]
    for jobs in ("1", "3"):
        assert main([*argv, "--run-name", f"jobs-{jobs}", "--jobs", jobs]) == 0
    one, three = read_summary(tmp_path / "logreg/jobs-1"), read_summary(tmp_path / "logreg/jobs-3")
    assert (one["config"]["jobs"], three["config"]["jobs"]) == (1, 3)
    keys = ["name", "status", "final_train_loss", "final_test_loss", "final_test_accuracy", "iterations_done"]
    assert [[r[k] for k in keys] for r in one["runs"]] == [[r[k] for k in keys] for r in three["runs"]]
    for r in one["runs"]:
        name = r["name"]
        assert read_scalars(tmp_path / "logreg/jobs-1" / name) == read_scalars(tmp_path / "logreg/jobs-3" / name)


def test_progress_draws_the_bar_on_a_pipe_with_the_running_runs(tmp_path, capsys):
    """--progress: the bar on stderr that is not a terminal; with --jobs it says how many runs are running and how
    far they are (from the workers' reports); the default on a pipe draws nothing."""
    argv = ["logreg", "--iterations", "1000", "--log-every", "50", "--eval-every", "1000", "--jobs", "2"]
    argv += ["--logdir", str(tmp_path), "--optimizers", "adam", "amsgrad"]
    assert main([*argv, "--run-name", "bar", "--progress"]) == 0
    err = capsys.readouterr().err
    assert "2.00k/2.00k" in err and re.search(r"[12] running, at iterations? [\d,]+", err)
    assert main([*argv, "--run-name", "quiet"]) == 0
    assert "2.00k" not in capsys.readouterr().err


def test_no_worker_outlives_a_driver_killed_outright(tmp_path, spawn, cpu_seconds):
    """SIGKILL (which no handler sees) on a --jobs 2 driver: the forkserver and both workers end with it
    (amsgrad_repro.pool_guard; before it, they ran on)."""
    argv = ["mlp", "--iterations", "1000000", "--jobs", "2", "--logdir", str(tmp_path), "--no-progress"]
    proc = spawn([sys.executable, "-m", "amsgrad_repro", *argv], stdout=subprocess.DEVNULL)
    deadline, family = time.time() + 600, set()  # a hang guard only
    while time.time() < deadline and len(family) < 3:  # the forkserver and two workers (and the resource tracker)
        family = _children(proc.pid)
        time.sleep(0.2)
    # the event, not a time: both workers are training (each has spent 0.5 s of CPU), so the whole family is there
    while time.time() < deadline and sorted(cpu_seconds(pid) for pid in _workers(proc.pid))[-2:] < [0.5, 0.5]:
        time.sleep(0.2)
    family = _children(proc.pid)
    proc.kill()
    proc.wait(timeout=60)
    stop = time.time() + 60
    while any(_alive(pid) for pid in family) and time.time() < stop:
        time.sleep(0.2)
    assert len(family) >= 3 and not any(_alive(pid) for pid in family)


def test_figure_2_puts_each_panel_in_the_papers_place(tmp_path, tiny_cifar, capsys):
    """Issue 26: the paper's arrangement, read back from the axes (their grid place and title): top row logistic
    regression's training and test loss and the network's training loss, bottom row CIFARNET's two panels and,
    in the free place, the network's test loss (ours). A model not given leaves its places empty; the order of
    the run directories does not matter; two runs of one model are refused."""
    from amsgrad_repro.plot import make_real_figure

    common = ["--iterations", "4", "--log-every", "2", "--eval-every", "2", "--logdir", str(tmp_path), "--no-progress"]
    assert main(["logreg", *common, "--run-name", "l", "--batch-size", "8"]) == 0
    assert main(["mlp", *common, "--run-name", "m", "--batch-size", "8"]) == 0
    assert main(["cifarnet", *common, "--run-name", "c", "--batch-size", "4", "--data-dir", str(tiny_cifar)]) == 0
    capsys.readouterr()
    dirs = {m: tmp_path / m / r for m, r in (("logreg", "l"), ("mlp", "m"), ("cifarnet", "c"))}

    def places(*models):
        fig = make_real_figure([dirs[m] for m in models])
        got = {}
        for ax in fig.axes:
            spec = ax.get_subplotspec()
            got[(spec.rowspan.start, spec.colspan.start)] = ax.get_title().split("\n")[0]
        return got, fig.axes[0].get_subplotspec().get_gridspec().get_geometry()

    top = {
        (0, 0): "Figure 2, top left: logistic regression, training loss",
        (0, 1): "Figure 2, top centre: logistic regression, test loss",
        (0, 2): "Figure 2, top right: one-hidden-layer network, training loss",
    }
    bottom = {
        (1, 0): "Figure 2, bottom left: CIFARNET, training loss",
        (1, 1): "Figure 2, bottom right: CIFARNET, test loss",
        (1, 2): "one-hidden-layer network, test loss (ours; not a panel of Figure 2)",
    }
    assert places("logreg", "mlp", "cifarnet") == ({**top, **bottom}, (2, 3))
    assert places("cifarnet", "mlp", "logreg") == ({**top, **bottom}, (2, 3))  # order given: no matter
    assert places("logreg", "mlp") == ({**top, (1, 2): bottom[(1, 2)]}, (2, 3))  # CIFARNET's places left empty
    assert places("cifarnet") == ({(0, 0): bottom[(1, 0)], (0, 1): bottom[(1, 1)]}, (1, 3))  # an empty row: gone
    fig = make_real_figure([dirs["cifarnet"]])
    assert "cifar10 (CIFAR-10 format, not the official files)" in fig.axes[0].get_title()  # what the files are
    assert main(["plot", str(dirs["mlp"]), str(dirs["mlp"]), "--out", str(tmp_path / "x")]) == 2
    assert "Figure 2 has one place per model" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(
    ("spec", "decoupled", "reference"),
    [
        ("adam", False, lambda p: torch.optim.Adam(p, lr=1e-3, betas=(0.9, 0.99), weight_decay=0.05)),
        ("adam", True, lambda p: torch.optim.AdamW(p, lr=1e-3, betas=(0.9, 0.99), weight_decay=0.05)),
        ("amsgrad", True, lambda p: torch.optim.AdamW(p, lr=1e-3, betas=(0.9, 0.99), weight_decay=0.05, amsgrad=True)),
        ("sgd", False, lambda p: torch.optim.SGD(p, lr=1e-3, weight_decay=0.05)),
    ],
)
def test_weight_decay_on_real_data_is_torchs_at_every_step(tmp_path, read_scalars, spec, decoupled, reference):
    """Issue 24: ``--weight-decay`` (L2) and ``--decoupled-weight-decay`` (AdamW's form) against torch's own
    optimizers in a plain loop written here: the logged minibatch loss bit for bit at every iteration."""
    argv = ["mlp", "--optimizers", spec, "--iterations", "25", "--log-every", "1", "--eval-every", "25"]
    argv += ["--weight-decay", "0.05", "--seed", "7", "--logdir", str(tmp_path), "--run-name", "wd", "--no-progress"]
    assert main([*argv, "--jobs", "1", *(["--decoupled-weight-decay"] if decoupled else [])]) == 0
    logged = [v for _, v in read_scalars(tmp_path / "mlp/wd" / spec)["train_loss"]]
    model = build_model("mlp", (1, 28, 28), 7)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the run (--threads 1): a matmul's summation order depends on the threads
    try:
        expected = _plain_loop(model, reference(model.parameters()), 7, 25)
    finally:
        torch.set_num_threads(threads)
    assert len(logged) == 25 and np.array_equal(np.float32(logged), np.float32(expected))  # events hold float32
    summary = json.loads((tmp_path / "mlp/wd/summary.json").read_text())
    assert summary["config"]["weight_decay"] == 0.05 and summary["config"]["decoupled_weight_decay"] is decoupled


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--weight-decay", "-1"], "--weight-decay must be >= 0"),
        (["--weight-decay", "nan"], "--weight-decay must be >= 0"),
        (["--decoupled-weight-decay"], "needs --weight-decay > 0"),
        (["--weight-decay", "0.1", "--decoupled-weight-decay", "--optimizers", "sgd"], "sgd has no decoupled_weight"),
    ],
)
def test_bad_weight_decay_is_one_line_and_nothing_written(tmp_path, capsys, argv, says):
    assert main(["mlp", *argv, "--iterations", "2", "--logdir", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1 and not any(tmp_path.iterdir())


def test_workers_report_iterations_as_they_go_and_the_bar_adds_up():
    """--jobs > 1: each worker reports its run's iterations through the pool while it trains (every
    min(log_every, 100) iterations), all of them before its result, and the driver's bar ends at the total with
    nothing counted twice (issue 27: the bar sat at 0 until a run ended)."""
    from amsgrad_repro.pool import Pool
    from amsgrad_repro.realdata.config import RealConfig, plan
    from amsgrad_repro.realdata.engines import remote_task, run_in_pool

    cfg = RealConfig(model="mlp", optimizers=("adam", "sgd"), iterations=120, log_every=20, eval_every=120).resolved()
    runs = plan(cfg)
    data = embedded()
    events = []
    with Pool(2, shared=data, preload=["amsgrad_repro.realdata.engines"]) as pool:
        jobs = [(run, (cfg, None, run, "cpu", 1)) for run in runs]
        for run, result in pool.run(remote_task, jobs, lambda name, n: events.append(("progress", name, n))):
            events.append(("result", run.name, result["fields"]["iterations_done"]))
    for run in runs:
        mine = [e for e in events if e[1] == run.name]
        assert mine[-1] == ("result", run.name, 120)
        assert [e[2] for e in mine[:-1]] == [20] * 6  # six reports of 20 iterations, all before the result

    class Bar:
        total, postfixes = 0, []

        def update(self, n):
            Bar.total += n

        def set_postfix_str(self, s, refresh=True):
            Bar.postfixes.append(s)

    class Ledger:
        def update(self, *args, **kwargs):
            pass

    import tempfile

    with Pool(2, shared=data, preload=["amsgrad_repro.realdata.engines"]) as pool, tempfile.TemporaryDirectory() as d:
        run_in_pool(pool, cfg, runs, Path(d), "cpu", Bar(), Ledger())
    assert Bar.total == 2 * 120
    # the postfix says which runs are running and how far, from the reports, and is cleared when the last returns
    assert any(re.fullmatch(r"[12] running, at iterations? (20|40|60|80|100|120)(–\d+)?", p) for p in Bar.postfixes)
    assert Bar.postfixes[-1] == ""
