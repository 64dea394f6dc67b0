"""The paper's algorithms (our torch optimizers), the zoo in both engines, and the theorem presets."""

import functools
import math

import numpy as np
import pytest
import torch

from amsgrad_repro.algorithms import AdamNC, AdaptiveMoment, AMSGrad
from amsgrad_repro.cli import main
from amsgrad_repro.optimizers import ZOO, resolve
from amsgrad_repro.synthetic.fused import FusedRun, simulate
from amsgrad_repro.synthetic.problems import PRESETS, Online, Stochastic

STEPS = 5000
SETTINGS = [Online, functools.partial(Stochastic, seed=5)]
SETTING_IDS = ["online", "stochastic"]


@pytest.mark.parametrize("setting", SETTINGS, ids=SETTING_IDS)
def test_amsgrad_pytorch_variant_equals_torch_adam_amsgrad(setting, plain_loop):
    ours, _ = plain_loop(setting(), functools.partial(AMSGrad, lr=1e-2, variant="pytorch"), STEPS)
    ref, _ = plain_loop(setting(), functools.partial(torch.optim.Adam, lr=1e-2, betas=(0.9, 0.99), amsgrad=True), STEPS)
    np.testing.assert_array_equal(ours, ref)
    ours, _ = plain_loop(setting(), functools.partial(AdaptiveMoment, lr=1e-2), STEPS)  # no max: torch's Adam
    ref, _ = plain_loop(setting(), functools.partial(torch.optim.Adam, lr=1e-2, betas=(0.9, 0.99)), STEPS)
    np.testing.assert_array_equal(ours, ref)


TORCH_TWINS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=1e-2),
    "momentum": lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9),
    "nesterov": lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9, nesterov=True),
    "adagrad": lambda p: torch.optim.Adagrad(p, lr=1e-2),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=1e-2),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2, betas=(0.9, 0.99)),
    "adamax": lambda p: torch.optim.Adamax(p, lr=1e-2, betas=(0.9, 0.99)),
    "nadam": lambda p: torch.optim.NAdam(p, lr=1e-2, betas=(0.9, 0.99)),
    "amsgrad-pytorch": lambda p: torch.optim.Adam(p, lr=1e-2, betas=(0.9, 0.99), amsgrad=True),
}


@pytest.mark.parametrize("setting", SETTINGS, ids=SETTING_IDS)
@pytest.mark.parametrize("name", list(TORCH_TWINS))
def test_torch_backed_zoo_optimizer_equals_its_torch_class(setting, name, plain_loop, trial_trajectory):
    choice = resolve(name, {"lr": 1e-2})
    ours, _ = trial_trajectory(setting(), choice.build, STEPS)
    ref, _ = plain_loop(setting(), TORCH_TWINS[name], STEPS)
    np.testing.assert_array_equal(ours, ref)


# --- reference loops written from the paper's equations, in plain float64 Python -----------------------------


def reference(coefs, steps, lr, b1, b2, eps, *, kind, lr_schedule="constant", beta1_schedule="constant", lam=1.0):
    """x_{t+1} for t = 1..steps, straight from the equations (no torch), on F = [−1, 1] with x_1 = 0."""
    x, m, v, vhat, prod1 = 0.0, 0.0, 0.0, 0.0, 1.0
    out = []
    for t in range(1, steps + 1):
        g = coefs[t - 1]
        a_t = lr / math.sqrt(t) if lr_schedule == "sqrt" else lr
        b1t = {"constant": b1, "exp": b1 * lam ** (t - 1), "inverse": b1 / t}[beta1_schedule]
        b2t = 1 - 1 / t if kind == "adamnc" else b2
        m = b1t * m + (1 - b1t) * g
        v = b2t * v + (1 - b2t) * g * g
        prod1 *= b1t
        bc1 = 1 - (b1**t if beta1_schedule == "constant" else prod1)
        bc2 = 1 - b2**t
        if kind == "paper":
            vhat = max(vhat, v)
            x = x - a_t * m / (math.sqrt(vhat) + eps)
        elif kind == "corrected":
            vhat = max(vhat, v / bc2)
            x = x - a_t / bc1 * m / (math.sqrt(vhat) + eps)
        elif kind == "pytorch":
            vhat = max(vhat, v)
            x = x - a_t / bc1 * m / (math.sqrt(vhat) / math.sqrt(bc2) + eps)
        elif kind == "adam":
            x = x - a_t / bc1 * m / (math.sqrt(v) / math.sqrt(bc2) + eps)
        else:  # adamnc
            x = x - a_t * m / (math.sqrt(v) + eps)
        x = min(max(x, -1.0), 1.0)
        out.append(x)
    return np.array(out)


def ours_float64(problem, make, steps):
    """Our optimizer on a float64 copy of the iterate, so it can be compared with the float64 reference."""
    x = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))
    opt = make([x])
    out = []
    for t in range(1, steps + 1):
        opt.zero_grad()
        (problem.coef(t) * x).backward()
        opt.step()
        with torch.no_grad():
            x.clamp_(-1.0, 1.0)
        out.append(x.item())
    return np.array(out)


CASES = {
    "amsgrad-paper": (dict(kind="paper"), lambda p, **k: AMSGrad(p, 1e-2, (0.9, 0.99), 0.0, variant="paper", **k)),
    "amsgrad-corrected": (
        dict(kind="corrected", eps=1e-8),
        lambda p, **k: AMSGrad(p, 1e-2, (0.9, 0.99), 1e-8, variant="corrected", **k),
    ),
    "amsgrad-pytorch": (
        dict(kind="pytorch", eps=1e-8),
        lambda p, **k: AMSGrad(p, 1e-2, (0.9, 0.99), 1e-8, variant="pytorch", **k),
    ),
    "adam": (dict(kind="adam", eps=1e-8), lambda p, **k: AdaptiveMoment(p, 1e-2, (0.9, 0.99), 1e-8, **k)),
    "adamnc": (dict(kind="adamnc"), lambda p, **k: AdamNC(p, 1e-2, 0.9, 0.0, **k)),
}
SCHEDULES = {
    "constant": {},
    "sqrt": {"lr_schedule": "sqrt"},
    "exp": {"beta1_schedule": "exp", "beta1_decay": 0.999},
    "inverse": {"beta1_schedule": "inverse"},
    "sqrt+exp": {"lr_schedule": "sqrt", "beta1_schedule": "exp", "beta1_decay": 0.99},
}


@pytest.mark.parametrize("setting", SETTINGS, ids=SETTING_IDS)
@pytest.mark.parametrize("schedule", list(SCHEDULES))
@pytest.mark.parametrize("case", list(CASES))
def test_our_algorithms_equal_reference_loops(setting, case, schedule):
    """Our torch optimizers in float64 against the equations in plain Python, 5,000 steps, every schedule.
    Tolerance: the measured worst is 1.8e-15 (a few float64 ulps: torch's lerp_/addcmul_ are FMAs, the reference
    rounds twice); 1e-13 allows ~50× that and is far below what a wrong rule moves (tests/test_update_rules.py)."""
    ref_kwargs, make = CASES[case]
    sched = SCHEDULES[schedule]
    problem = setting()
    coefs = problem.coefs(1, STEPS)
    ref = reference(
        coefs,
        STEPS,
        1e-2,
        0.9,
        0.99,
        ref_kwargs.get("eps", 0.0),
        kind=ref_kwargs["kind"],
        lr_schedule=sched.get("lr_schedule", "constant"),
        beta1_schedule=sched.get("beta1_schedule", "constant"),
        lam=sched.get("beta1_decay", 1.0),
    )
    ours = ours_float64(problem, functools.partial(make, **sched), STEPS)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-13)


def test_variants_really_differ_early():
    """paper / pytorch / corrected are different algorithms: their first steps differ."""
    xs = {}
    for variant in ("paper", "pytorch", "corrected"):
        xs[variant] = ours_float64(Online(), functools.partial(AMSGrad, lr=1e-2, variant=variant), 50)
    # t = 1: every variant steps by exactly α (m_1/√v_1 = sign g_1, corrected or not) ...
    assert xs["paper"][0] == pytest.approx(-1e-2) and xs["pytorch"][0] == pytest.approx(-1e-2)
    # ... from t = 2 on, (1 − β1^t) and √(1 − β2^t) no longer cancel, and the three separate
    for a, b in (("paper", "pytorch"), ("paper", "corrected"), ("pytorch", "corrected")):
        assert np.max(np.abs(xs[a] - xs[b])) > 1e-4, (a, b)


# --- every fused optimizer against its Trial twin -----------------------------------------------------------

FUSED_SPECS = [
    *ZOO,
    "momentum,momentum=0.5",
    "adagrad,eps=1e-6",
    "rmsprop,alpha=0.9",
    "nadam,momentum_decay=0.01",
    "adam,beta1=0.0,beta2=0.999",
    "adam,lr_schedule=sqrt",
    "amsgrad-pytorch,beta1_schedule=exp,beta1_decay=0.999",
    "amsgrad-paper,lr_schedule=sqrt,beta1_schedule=inverse",
    "amsgrad-corrected,beta1_schedule=inverse",
    "adamnc,lr_schedule=sqrt,beta1_schedule=exp,beta1_decay=0.99",
]


#: how far the engines may drift apart: torch's CPU sqrt is off by one ulp on some inputs (see fused.py), and the
#: measured worst over FUSED_SPECS × both settings is 1.2e-10 in float32 and 5.6e-17 in float64
TOLERANCE = {"float32": 1e-6, "float64": 1e-13}


@pytest.mark.parametrize(
    "setting, dtype",
    [
        pytest.param(SETTINGS[0], "float32", id="online-float32"),
        pytest.param(SETTINGS[1], "float32", id="stochastic-float32"),
        # float64: the same arithmetic in the other dtype, 45 to 100 s of Trial steps each, so with the long checks
        # (float64 fused against Trial stays in the default suite through tests/test_update_rules.py)
        pytest.param(SETTINGS[0], "float64", id="online-float64", marks=pytest.mark.slow),
        pytest.param(SETTINGS[1], "float64", id="stochastic-float64", marks=pytest.mark.slow),
    ],
)
def test_every_fused_optimizer_equals_its_trial_twin(setting, dtype, trial_trajectory):
    choices = [resolve(spec, {"lr": 1e-2}) for spec in FUSED_SPECS]
    xs, avg = [], []

    def on_log(ts, x, r):
        assert x.dtype == np.dtype(dtype)
        xs.append(x)
        avg.append(r)

    runs = [FusedRun(c) for c in choices]
    simulate([setting(dtype=dtype)], runs, STEPS, log_every=1, on_log=on_log, window=2048, dtype=dtype)
    x_fused, avg_fused = np.concatenate(xs, axis=1), np.concatenate(avg, axis=1)
    coefs = np.abs(setting().coefs(1, STEPS))
    t = np.arange(1, STEPS + 1)
    worst = {}
    for k, choice in enumerate(choices):
        problem = setting(dtype=dtype)
        x_trial, avg_trial = trial_trajectory(problem, choice.build, STEPS)
        assert problem.x.dtype == getattr(torch, dtype)
        dx = np.abs(x_fused[k].astype(np.float64) - x_trial)
        worst[choice.label] = float(dx.max())
        # R_t/t: the final values agree, and at every t the difference is no more than the iterates'
        # differences explain, |ΔR_t| ≤ Σ_s |c_s|·|Δx_s| (x_s played at s): the sums themselves are identical.
        # (Early on, one ulp of x times 1010 over a small t can exceed the tolerance; see torch's sqrt in fused.py.)
        assert abs(avg_fused[k, -1] - avg_trial[-1]) <= TOLERANCE[dtype], choice.label
        played = np.concatenate([[0.0], dx[:-1]])
        assert np.all(np.abs(avg_fused[k] - avg_trial) <= np.cumsum(coefs * played) / t + 1e-12), choice.label
        assert np.unique(x_trial).size > 20, choice.label  # it moves
    assert max(worst.values()) <= TOLERANCE[dtype], worst


def test_float64_is_not_float32():
    """The two dtypes are different computations: the same run ends elsewhere in float64, and x keeps digits
    float32 cannot hold."""
    runs = [FusedRun.of("amsgrad-corrected"), FusedRun.of("adamnc")]
    r32 = simulate([Online()], runs, 200_000, log_every=200_000)
    r64 = simulate([Online(dtype="float64")], runs, 200_000, log_every=200_000, dtype="float64")
    assert r32.x.dtype == np.float32 and r64.x.dtype == np.float64
    assert np.all(r32.x != r64.x)
    assert np.any(r64.x != r64.x.astype(np.float32))
    with pytest.raises(ValueError, match="dtype"):
        simulate([Online()], runs, 10, dtype="float16")
    with pytest.raises(ValueError, match="dtype"):
        Online(dtype="bfloat16")


# --- behaviour ---------------------------------------------------------------------------------------------


def test_theorem1_adam_goes_to_plus_one_sgd_and_amsgrad_to_minus_one():
    problem = Online(rare_coef=3.0, common_coef=-1.0, period=3)  # preset theorem1, C = 3
    b1, b2 = PRESETS["theorem1"].theorem_betas()
    assert (b1, b2) == (0.0, 0.1)
    specs = ["adam", "sgd", "amsgrad", "amsgrad-paper"]
    runs = [FusedRun.of(s, lr=1e-2, beta1=b1, beta2=b2) for s in specs]
    result = simulate([problem], runs, 200_000, log_every=10_000)
    x = dict(zip(specs, result.x, strict=True))
    assert x["adam"] > 0.9
    assert x["sgd"] <= -0.98 and x["amsgrad"] <= -0.98 and x["amsgrad-paper"] <= -0.98
    assert result.average_regret[0] > 0.5 > result.average_regret[2]


def test_presets_give_the_theorems_constants():
    assert PRESETS["theorem1"].constants("online", 5.0) == {"rare_coef": 5.0, "common_coef": -1.0, "period": 3}
    assert PRESETS["theorem2"].constants("online", 50) == {"rare_coef": 50.0, "common_coef": -1.0, "period": 50}
    k = PRESETS["theorem3"].constants("stochastic", 101.0, 0.02)
    assert k["p"] == pytest.approx(1.02 / 102)
    expected_slope = k["p"] * k["rare_coef"] + (1 - k["p"]) * k["common_coef"]
    assert Stochastic(k["rare_coef"], k["common_coef"], k["p"]).mean_slope == pytest.approx(expected_slope)
    assert expected_slope == pytest.approx(0.02)  # E[f_t] = δ·x, so x* = −1
    with pytest.raises(ValueError):
        PRESETS["theorem1"].constants("online", 2.0)  # needs C > 2
    with pytest.raises(ValueError):
        PRESETS["theorem1"].constants("stochastic")


# --- validation --------------------------------------------------------------------------------------------

BAD_API = [
    lambda p: AMSGrad(p, lr=-1e-3),
    lambda p: AMSGrad(p, lr=float("nan")),
    lambda p: AMSGrad(p, betas=(1.0, 0.99)),
    lambda p: AMSGrad(p, betas=(0.9, -0.1)),
    lambda p: AMSGrad(p, eps=-1.0),
    lambda p: AMSGrad(p, variant="keras"),
    lambda p: AMSGrad(p, lr_schedule="cosine"),
    lambda p: AMSGrad(p, beta1_schedule="linear"),
    lambda p: AMSGrad(p, beta1_schedule="exp", beta1_decay=0.0),
    lambda p: AMSGrad(p, beta1_decay=1.5),
    lambda p: AdaptiveMoment(p, amsgrad="paper", bias_correction=True),
    lambda p: AdaptiveMoment(p, amsgrad="pytorch", bias_correction=False),
    lambda p: AdaptiveMoment(p, beta2_schedule="adamnc", amsgrad="paper"),
    lambda p: AdamNC(p, beta1=1.0),
    lambda p: AdamNC(p, lr=torch.tensor([1e-3, 1e-3])),  # torch: "Tensor lr must be 1-element"
    lambda p: AMSGrad(p, weight_decay=-1e-2),
    lambda p: AMSGrad(p, maximize=1),
]


@pytest.mark.parametrize("make", BAD_API)
def test_bad_hyperparameter_is_a_value_error(make):
    with pytest.raises(ValueError):
        make([torch.nn.Parameter(torch.zeros(()))])


BAD_CLI = [
    ["--optimizers", "adam,beta1=1.5"],
    ["--optimizers", "sgd,momentum=0.5"],  # sgd has no momentum (that is "momentum")
    ["--optimizers", "momentum,momentum=-1"],
    ["--optimizers", "adam,lr=0"],
    ["--optimizers", "adam,lr=abc"],
    ["--optimizers", "adam,lr"],
    ["--optimizers", "amsgrad-paper,lr_schedule=cosine"],
    ["--optimizers", "rmsprop,alpha=1.5"],
    ["--optimizers", "adamnc,beta2=0.9"],
    ["--optimizers", "torch.optim.NoSuch"],
    ["--beta1-decay", "0"],
    ["--beta1-schedule", "linear"],
    ["--momentum", "1.0"],
    ["--preset", "theorem1", "--C", "2"],
    ["--preset", "theorem2", "--C", "2.5"],
]


@pytest.mark.parametrize("argv", BAD_CLI, ids=[" ".join(a) for a in BAD_CLI])
def test_bad_hyperparameter_at_the_cli_is_exit_2(tmp_path, capsys, argv):
    try:
        code = main(["online", *argv, "--steps", "10", "--logdir", str(tmp_path / "logs"), "--no-progress"])
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "logs").exists()


def test_beta_condition_warning_and_theorem_print(tmp_path, capsys):
    code = main(
        [
            "online",
            "--preset",
            "theorem2",
            "--C",
            "11",
            "--betas",
            "0.99",
            "0.9",
            "--steps",
            "100",
            "--logdir",
            str(tmp_path),
            "--no-progress",
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    assert "warning: adam has β1 = 0.99 ≥ √β2" in captured.err
    assert "x* = -1" in captured.out and "any β1 < √β2" in captured.out
    code = main(["online", "--preset", "theorem1", "--steps", "100", "--logdir", str(tmp_path), "--no-progress"])
    assert code == 0
    captured = capsys.readouterr()
    assert "β1 = 0, β2 = 1/(1+C²) = 0.1" in captured.out
    assert "warning" not in captured.err
