"""Γ_t (amsgrad_repro.gamma, docs/gamma.md): against a plain-Python reference written here from the paper's
formula, the fused engine against the Trial bit for bit, and its promises (AMSGrad's never negative, Adam's
negative on the paper's problem) in both engines, through the CLI, on real data and in the phase diagram."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from amsgrad_repro.cli import main
from amsgrad_repro.events import ScalarRecord
from amsgrad_repro.gamma import inverse_step, why_undefined
from amsgrad_repro.optimizers import resolve
from amsgrad_repro.synthetic.config import GAMMA_CHARTS, ProblemConfig
from amsgrad_repro.synthetic.fused import FusedRun, simulate
from amsgrad_repro.synthetic.trial import ScalarLogger, build_trial

ZOO = ["adam", "amsgrad", "amsgrad-paper", "amsgrad-corrected", "adamnc", "sgd", "momentum", "nesterov", "adagrad",
       "rmsprop", "adamax", "nadam", "amsgrad,lr_schedule=sqrt", "adam,lr_schedule=sqrt"]  # fmt: skip


def reference_inverse_steps(name: str, hp: dict, coefs: list[float]) -> list[float]:
    """√V_t/α_t for t = 1..T from the paper's definitions, in plain Python floats, on gradients g_t = c_t (on the
    linear problems the gradient does not depend on x, so neither does V_t). Written from docs/gamma.md's table,
    not from the package's code."""
    lr, eps = hp["lr"], hp.get("eps", 0.0)
    b2 = hp.get("beta2", 0.0)
    v = vmax = s = 0.0
    out = []
    for t, g in enumerate(coefs, start=1):
        alpha = lr / math.sqrt(t) if hp.get("lr_schedule") == "sqrt" else lr
        if name in ("sgd", "momentum", "nesterov"):
            out.append(1.0 / lr)
            continue
        if name == "adagrad":
            s += g * g
            out.append((math.sqrt(s) + eps) / lr)
            continue
        if name == "rmsprop":
            a = hp["alpha"]
            v = a * v + (1 - a) * g * g
            out.append((math.sqrt(v) + eps) / lr)
            continue
        if name == "adamax":
            v = max(b2 * v, abs(g) + eps)  # u_t
            out.append(v / lr)
            continue
        if name == "adamnc":
            b2 = 1 - 1 / t
        v = b2 * v + (1 - b2) * g * g
        bc2 = 1 - b2**t
        if name in ("adam", "nadam"):
            out.append((math.sqrt(v / bc2) + eps) / alpha)
        elif name == "amsgrad":  # the zoo's amsgrad: torch's form, max of the raw v, then corrected
            vmax = max(vmax, v)
            out.append((math.sqrt(vmax / bc2) + eps) / alpha)
        elif name == "amsgrad-corrected":
            vmax = max(vmax, v / bc2)
            out.append((math.sqrt(vmax) + eps) / alpha)
        elif name == "amsgrad-paper":
            vmax = max(vmax, v)
            out.append((math.sqrt(vmax) + eps) / alpha)
        else:  # adamnc: no bias correction, no max
            out.append((math.sqrt(v) + eps) / alpha)
    return out


def _trial_gamma(problem_cfg: ProblemConfig, spec: str, steps: int, log_every: int = 1) -> dict[str, np.ndarray]:
    problem = problem_cfg.make()
    record = ScalarRecord()
    logger = ScalarLogger("", log_every, steps, record=record)
    build_trial(problem, resolve(spec).build(problem.parameters()), steps, callbacks=[logger], gamma=True).run()
    out: dict[str, list] = {}
    for tag, value, _ in record.scalars:
        out.setdefault(tag, []).append(value)
    return {tag: np.array(values) for tag, values in out.items()}


@pytest.mark.parametrize("spec", ZOO)
@pytest.mark.parametrize("setting", ["online", "stochastic"])
def test_trial_gamma_is_the_papers_formula(spec, setting):
    """float64 state: Γ_t from the Trial equals the reference's to rounding, relative to √V/α."""
    cfg = ProblemConfig(setting, dtype="float64")
    steps = 300
    got = _trial_gamma(cfg, spec, steps)
    name = spec.split(",")[0]
    hp = resolve(spec).hp
    functions = cfg.functions()
    d = np.array(reference_inverse_steps(name, hp, functions.coefs(1, steps).tolist()))
    want = np.concatenate([[np.nan], np.diff(d)])
    assert np.isnan(got["gamma"][0]) and np.isnan(got["gamma_negative_steps"][0])
    np.testing.assert_allclose(got["gamma"][1:], want[1:], rtol=0, atol=1e-12 * np.abs(d).max())
    # the fraction counts the reference's negative steps (away from ties, where rounding could flip a sign)
    clear = np.abs(want[1:]) > 1e-9 * np.abs(d).max()
    negative = np.cumsum(want[1:] < 0) / np.arange(1, steps)
    assert np.array_equal(got["gamma_negative_steps"][1:][clear], negative[clear])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("setting", ["online", "stochastic"])
def test_fused_gamma_equals_the_trial_bit_for_bit(setting, dtype):
    cfg = ProblemConfig(setting, dtype=dtype)
    steps, every = 500, 7
    trials = {spec: _trial_gamma(cfg, spec, steps, every) for spec in ZOO}
    for simd in (False, True):  # the lane kernel too (it takes the Adam family when asked)
        got: list = []
        simulate([cfg.functions()], [FusedRun.of(s) for s in ZOO], steps, log_every=every, dtype=dtype, gamma=True,
                 on_gamma=lambda ts, g, n, got=got: got.append((g, n)), simd=simd)  # fmt: skip
        gamma = np.concatenate([g for g, _ in got], axis=1)
        negative = np.concatenate([n for _, n in got], axis=1)
        for k, spec in enumerate(ZOO):
            trial = trials[spec]
            assert np.array_equal(trial["gamma"], gamma[k], equal_nan=True), (spec, simd)
            assert np.array_equal(trial["gamma_negative_steps"], negative[k], equal_nan=True), (spec, simd)


def test_lanes_equal_the_single_run_kernel_over_a_grid():
    """Many β's through the lane kernel and the single-run kernel: the same Γ and the same count, bit for bit,
    also across windows and bias-correction tables (steps past TABLE_STEPS)."""
    cfg = ProblemConfig("stochastic").functions()
    runs = [FusedRun.of(f"{name},beta1={b1},beta2={b2}") for name in ("adam", "amsgrad", "amsgrad-corrected")
            for b1 in (0.0, 0.5, 0.9) for b2 in (0.9, 0.99, 0.999)]  # fmt: skip
    a = simulate([cfg], runs, 5000, log_every=5000, gamma=True, simd=True, window=1500)
    b = simulate([cfg], runs, 5000, log_every=5000, gamma=True, simd=False)
    assert np.array_equal(a.gamma, b.gamma) and np.array_equal(a.gamma_negative_steps, b.gamma_negative_steps)


@pytest.mark.parametrize("setting", ["online", "stochastic"])
def test_amsgrad_papers_form_never_grows_its_step_and_adam_does(setting):
    """The paper's claims: AMSGrad (Algorithm 2, constant α) keeps Γ ⪰ 0 over a long run, at several β's; Adam's Γ
    is negative on the paper's problem, 100 of every 101 steps online (v decays between the rare gradients)."""
    cfg = ProblemConfig(setting).functions()
    specs = [f"amsgrad-paper,beta1={b1},beta2={b2}" for b1 in (0.0, 0.9) for b2 in (0.9, 0.99, 0.999)]
    result = simulate([cfg], [FusedRun.of(s) for s in [*specs, "adam"]], 1_000_000, log_every=1_000_000, gamma=True)
    assert np.all(result.gamma_negative_steps[:-1] == 0.0)
    adam = result.gamma_negative_steps[-1]
    assert adam > 0.9
    if setting == "online":
        assert abs(adam - 100 / 101) < 1e-3
    # the Trial agrees on a shorter run
    trial = _trial_gamma(ProblemConfig(setting), "amsgrad-paper", 2000, 2000)
    assert trial["gamma_negative_steps"][-1] == 0.0


def test_inverse_step_reads_torch_and_our_optimizers_alike():
    """torch.optim.Adam(amsgrad=True) and our AMSGrad(variant="pytorch") give the same √V/α; a complex parameter
    is read as its real view; RMSprop centred subtracts ḡ²; Adagrad divides α by its decay; before any step, None."""
    from amsgrad_repro.algorithms import AMSGrad

    torch.manual_seed(0)
    a, b = torch.nn.Parameter(torch.randn(5)), None
    b = torch.nn.Parameter(a.detach().clone())
    ta = torch.optim.Adam([a], lr=0.01, betas=(0.9, 0.99), amsgrad=True)
    ob = AMSGrad([b], lr=0.01, betas=(0.9, 0.99), eps=1e-8, variant="pytorch")
    assert inverse_step(ta, a) is None
    for _ in range(5):
        g = torch.randn(5)
        for p, opt in ((a, ta), (b, ob)):
            p.grad = g.clone()
            opt.step()
        assert np.array_equal(inverse_step(ta, a), inverse_step(ob, b))
    z = torch.nn.Parameter(torch.randn(3, dtype=torch.complex64))
    oz = torch.optim.Adam([z])
    z.grad = torch.randn(3, dtype=torch.complex64)
    oz.step()
    assert inverse_step(oz, z).shape == (3, 2)
    r = torch.nn.Parameter(torch.zeros(4))
    orr = torch.optim.RMSprop([r], lr=0.1, centered=True)
    r.grad = torch.tensor([1.0, -1.0, 2.0, 0.5])
    orr.step()
    sq, avg = orr.state[r]["square_avg"].double().numpy(), orr.state[r]["grad_avg"].double().numpy()
    assert np.array_equal(inverse_step(orr, r), (np.sqrt(sq - avg * avg) + 1e-8) / 0.1)
    q = torch.nn.Parameter(torch.zeros(2))
    oq = torch.optim.Adagrad([q], lr=0.1, lr_decay=0.5)
    for _ in range(3):
        q.grad = torch.ones(2)
        oq.step()
    assert np.allclose(inverse_step(oq, q), (np.sqrt(3.0) + 1e-10) / (0.1 / 2.0))


@pytest.mark.parametrize("cls", [torch.optim.Adadelta, torch.optim.RAdam, torch.optim.Rprop, torch.optim.ASGD])
def test_undefined_optimizers_say_so(cls):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = cls([p])
    assert "not defined" in why_undefined(opt)
    with pytest.raises(ValueError, match="not defined"):
        inverse_step(opt, p)


def test_cli_gamma_tags_summary_layout_and_refusal(tmp_path, capsys, read_scalars):
    logdir = tmp_path / "logs"
    argv = ["online", "--steps", "3000", "--log-every", "500", "--logdir", str(logdir), "--no-progress", "--gamma"]
    assert main([*argv, "--run-name", "f", "--optimizers", "adam", "amsgrad-paper"]) == 0
    table = capsys.readouterr().out
    assert "Γ<0 steps" in table and "0.00%" in table
    run = logdir / "online" / "f"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["config"]["gamma"] is True
    rows = {r["name"]: r for r in summary["runs"]}
    assert rows["amsgrad-paper"]["gamma_negative_steps"] == 0.0 and rows["adam"]["gamma_negative_steps"] > 0.9
    scalars = read_scalars(run / "adam")
    assert [s for s, _ in scalars["gamma"]] == [500, 1000, 1500, 2000, 2500, 3000]
    assert scalars["gamma_negative_steps"][-1][1] == pytest.approx(rows["adam"]["gamma_negative_steps"])
    # the trial engine writes the same numbers
    assert main([*argv, "--run-name", "t", "--engine", "trial", "--optimizers", "adam", "amsgrad-paper"]) == 0
    trial = read_scalars(logdir / "online" / "t" / "adam")
    assert trial["gamma"] == scalars["gamma"] and trial["gamma_negative_steps"] == scalars["gamma_negative_steps"]
    assert [title for title, _ in GAMMA_CHARTS] == [c for c in _layout_charts(run) if "Γ" in c]
    assert _layout_charts(logdir / "online" / "t") == _layout_charts(run)
    # plot draws a second row for them, titled as ours
    from amsgrad_repro.plot import make_figure

    titles = [ax.get_title() for ax in make_figure([run]).axes if ax.get_visible()]
    assert titles[2:] == ["online (f): Γ_t (ours; Section 3)", "online (f): share of steps with Γ_t < 0 (ours)"]
    # an optimizer without a Γ: one line, exit 2, nothing written
    capsys.readouterr()
    assert main([*argv, "--run-name", "r", "--optimizers", "torch.optim.Rprop"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not defined for torch.optim.Rprop" in err[0]
    assert not (logdir / "online" / "r").exists()


def _layout_charts(run_dir) -> list[str]:
    """The chart titles of the Custom Scalars layout an invocation wrote at its run directory's root."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.custom_scalar import layout_pb2

    titles = []
    for path in run_dir.glob("events.out.tfevents.*"):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "custom_scalars":
                    layout = layout_pb2.Layout.FromString(value.tensor.string_val[0])
                    titles += [chart.title for category in layout.category for chart in category.chart]
    return titles


def test_without_gamma_nothing_changes(tmp_path, read_scalars, read_summary):
    """The default writes no Γ tags and no Γ columns (the flag is off by default: docs/gamma.md gives its cost)."""
    logdir = tmp_path / "logs"
    assert main(["online", "--steps", "100", "--logdir", str(logdir), "--run-name", "d", "--no-progress"]) == 0
    assert set(read_scalars(logdir / "online" / "d" / "adam")) == {"x", "average_regret"}
    assert "gamma_negative_steps" not in read_summary(logdir / "online" / "d")["runs"][0]
    assert not [c for c in _layout_charts(logdir / "online" / "d") if "Γ" in c] and _layout_charts(
        logdir / "online" / "d"
    )


def _plain_real_gamma(model, opt, batches, steps, every):
    """The real-data reference: a plain torch loop (no torchbearer), reading √V/α at t − 1 and t by hand."""
    import torch.nn.functional as F

    from amsgrad_repro.realdata.models import to_input

    out, before = {}, None
    for t in range(1, steps + 1):
        idx = batches.indices(t)
        opt.zero_grad()
        F.cross_entropy(model(to_input(batches.x[idx])), batches.y[idx]).backward()
        opt.step()
        now = np.concatenate([inverse_step(opt, p).ravel() for p in model.parameters()])
        if (t % every == 0 or t == steps) and before is not None:
            grew = now < before
            growth = float(np.median(before[grew] / now[grew]) - 1) if grew.any() else 0.0
            out[t] = (float(grew.mean()), growth)
        before = now
    return out


def test_real_data_gamma_equals_a_plain_loop_and_amsgrad_paper_never_grows(tmp_path, read_scalars, read_summary):
    from amsgrad_repro.realdata.data import load
    from amsgrad_repro.realdata.models import build_model
    from amsgrad_repro.realdata.trial import Batches

    logdir = tmp_path / "logs"
    argv = ["mlp", "--iterations", "60", "--log-every", "20", "--eval-every", "60", "--logdir", str(logdir),
            "--run-name", "g", "--no-progress", "--jobs", "1", "--gamma",
            "--optimizers", "adam", "amsgrad-paper"]  # fmt: skip
    assert main(argv) == 0
    summary = read_summary(logdir / "mlp" / "g")
    data = load("mnist", None)
    torch.manual_seed(0)
    model = build_model("mlp", data.shape, 0)
    opt = resolve("adam").build(model.parameters())
    batches = Batches(data.x_train, data.y_train, 128, 0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the run (--threads 1, the default): the same sums, the same numbers
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            want = _plain_real_gamma(model, opt, batches, 60, 20)
    finally:
        torch.set_num_threads(threads)
    got = read_scalars(logdir / "mlp" / "g" / "adam")  # event files hold float32: equal to its rounding
    assert [s for s, _ in got["gamma_negative_coordinates"]] == [20, 40, 60]
    for (t, frac), (_, growth) in zip(got["gamma_negative_coordinates"], got["gamma_step_growth"], strict=True):
        assert frac == pytest.approx(want[t][0], rel=1e-7) and growth == pytest.approx(want[t][1], rel=1e-7)
    rows = {r["optimizer"]: r for r in summary["runs"]}
    assert rows["amsgrad-paper"]["gamma_negative_coordinates"] == 0.0
    assert 0.0 < rows["adam"]["gamma_negative_coordinates"] < 1.0


def test_real_data_gamma_refuses_an_optimizer_without_one(tmp_path, capsys):
    argv = ["logreg", "--iterations", "10", "--logdir", str(tmp_path), "--gamma"]
    argv += ["--optimizers", "torch.optim.Adadelta"]
    assert main(argv) == 2
    assert "not defined for torch.optim.Adadelta" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_phase_gamma_map(tmp_path):
    logdir = tmp_path / "logs"
    argv = ["phase", "--steps", "3000", "--beta1", "0", "0.9", "2", "--beta2", "0.9", "0.999", "3", "--gamma",
            "--optimizers", "adam", "amsgrad-paper", "--logdir", str(logdir), "--run-name", "p",
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    out = logdir / "phase" / "online" / "p"
    lines = (out / "phase.csv").read_text().splitlines()
    assert lines[0].endswith(",gamma_negative_steps")
    fractions = {}
    for line in lines[1:]:
        fractions.setdefault(line.split(",")[0], []).append(float(line.split(",")[-1]))
    assert all(f == 0.0 for f in fractions["amsgrad-paper"]) and all(f > 0.5 for f in fractions["adam"])
    assert json.loads((out / "phase.json").read_text())["gamma"] is True
    # the same cells run alone in the fused engine give the same fractions
    one = simulate([ProblemConfig("online").functions()], [FusedRun.of("adam,beta1=0.9,beta2=0.999")], 3000, gamma=True)
    assert fractions["adam"][-1] == pytest.approx(one.gamma_negative_steps[0], rel=1e-8)
