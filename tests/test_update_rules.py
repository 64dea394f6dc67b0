"""Tests that catch a wrong update rule: both engines against loops written here, over the whole space the
commands accept, at few steps.

Usage::

    pytest tests/test_update_rules.py

docs/development.md ("How we know the tests bite") lists the classes of mistake these guard and how to repeat a
mutation check by hand. In short:

- **every value that changes the arithmetic is used**: ε = 0, the usual ε and a large ε (10, where ε inside or
  outside the square root, or a missing bias correction under ε, moves x by far more than any tolerance); β1
  below β2 and above it (β2's bias correction 1 − β2^t reaches 1 in floating point long before β1's does);
- **every state is reached**: step sizes large enough that x hits both ends of F, for F = [−1, 1] and for
  F = [−2, 0.5] (a clamp to the wrong bound, or to [−1, 1] always, fails);
- **checked against something independent of the package**: the reference loops below are the paper's equations
  in plain Python floats (no torch, no numpy in the update), and the streams are pinned to values written here;
- **tolerances at the precision the comparison can reach**, each measured and explained where it is set.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from amsgrad_repro.optimizers import ZOO, resolve
from amsgrad_repro.synthetic.fused import FusedRun, simulate
from amsgrad_repro.synthetic.problems import BernoulliStream, Bounds, Online, PeriodicStream, Stochastic

STEPS = 300
#: adaptive steps are about α each whatever the gradient's scale: with α = 0.5, x crosses F = [−2, 0.5] many
#: times in 300 steps and sits on both of its ends (checked below, not assumed)
LR = 0.5
BOUNDS = [(-1.0, 1.0), (-2.0, 0.5)]
BETAS = [(0.9, 0.99), (0.99, 0.5)]  # β1 < β2 (the paper's) and β1 > β2 (the phase maps' upper-left corner)
#: ε = 10 is of the order of √v for the common slope (−10): where ε enters then moves x by ~0.1
EPSILONS = [0.0, 1e-8, 10.0]


def make_problem(setting: str, bounds: tuple[float, float], dtype: str = "float64"):
    """The paper's problem of ``setting`` on F = ``bounds``, x₁ = 0 (stochastic: seed 5)."""
    if setting == "online":
        return Online(bounds=Bounds(*bounds), dtype=dtype)
    return Stochastic(seed=5, bounds=Bounds(*bounds), dtype=dtype)


# --- the reference: the paper's equations in plain Python floats (float64) ---------------------------------


def reference(coefs, lr, b1, b2, eps, kind, lo, hi):
    """x_{t+1} for t = 1..len(coefs) from x₁ = 0, on F = [lo, hi]. ``kind``: which rule (see the branches;
    each is the paper's Algorithm, or torch's Adam/AMSGrad, in the form its docstring gives)."""
    x, m, v, vhat = 0.0, 0.0, 0.0, 0.0
    out = []
    for t, g in enumerate(coefs, start=1):
        b2t = 1 - 1 / t if kind == "adamnc" else b2  # AdamNC: β2t = 1 − 1/t, so v_t is the mean of g²
        m = b1 * m + (1 - b1) * g
        v = b2t * v + (1 - b2t) * g * g
        bc1, bc2 = 1 - b1**t, 1 - b2**t
        if kind == "amsgrad-paper":  # Algorithm 2: no bias correction, max of the raw v
            vhat = max(vhat, v)
            x -= lr * m / (math.sqrt(vhat) + eps)
        elif kind == "amsgrad-corrected":  # max of the bias-corrected v̂; ε outside the root
            vhat = max(vhat, v / bc2)
            x -= lr / bc1 * m / (math.sqrt(vhat) + eps)
        elif kind == "amsgrad-pytorch":  # torch.optim.Adam(amsgrad=True): max of raw v, then corrected
            vhat = max(vhat, v)
            x -= lr / bc1 * m / (math.sqrt(vhat) / math.sqrt(bc2) + eps)
        elif kind == "adam":  # torch.optim.Adam
            x -= lr / bc1 * m / (math.sqrt(v) / math.sqrt(bc2) + eps)
        elif kind == "adamnc":  # Section 4's AdamNC with constant β1, no correction
            x -= lr * m / (math.sqrt(v) + eps)
        else:
            raise ValueError(kind)
        x = min(max(x, lo), hi)
        out.append(x)
    return np.array(out)


PAPER_FAMILY = ["adam", "amsgrad-paper", "amsgrad-corrected", "amsgrad-pytorch", "adamnc"]


def _hp(kind: str, b1: float, b2: float, eps: float) -> dict:
    return {"lr": LR, "beta1": b1, "eps": eps} | ({} if kind == "adamnc" else {"beta2": b2})


REFERENCE_CASES = [
    (kind, betas, eps, bounds)
    for kind in PAPER_FAMILY
    for betas in BETAS
    for eps in EPSILONS
    for bounds in BOUNDS
    if not (kind == "adamnc" and betas != BETAS[0])  # AdamNC has no β2 to order against β1
]

#: Measured worst |Δx| over REFERENCE_CASES × both settings, 300 steps: 3.8e-15 for the Trial and for the fused
#: engine alike (a few float64 ulps of |x| ≤ 2: torch's FMAs in lerp_/addcmul_, which the reference rounds as a
#: product and a sum, amplified a little by the adaptive step). 1e-13 leaves a factor ~25 for other CPUs' libm;
#: the smallest wrong rule tried (docs/development.md) moves x by more than 1e-4.
REFERENCE_TOLERANCE = 1e-13


def _fused_float64(problem, specs_hp: list[tuple[str, dict]], steps: int) -> np.ndarray:
    """x_{t+1} of every run, (runs, steps), through the fused engine in float64, logging every step."""
    xs = []
    runs = [FusedRun(resolve(name, hp)) for name, hp in specs_hp]
    simulate([problem], runs, steps, log_every=1, on_log=lambda t, x, r: xs.append(x), dtype="float64")
    return np.concatenate(xs, axis=1)


@pytest.mark.parametrize("setting", ["online", "stochastic"])
def test_both_engines_equal_the_reference_loops_everywhere(setting, trial_trajectory):
    """Every rule of the paper's family × ε ∈ {0, 1e-8, 1} × β1 above and below β2 × two feasible sets, in
    float64, against :func:`reference` at every step: the Trial (torch) and the fused engine alike."""
    coefs = make_problem(setting, BOUNDS[0]).coefs(1, STEPS)
    worst = {"trial": 0.0, "fused": 0.0}
    ends: dict[tuple, set] = {}  # (kind, bounds) → the ends of F the reference reached
    for bounds in BOUNDS:
        cases = [c for c in REFERENCE_CASES if c[3] == bounds]
        specs = [(kind, _hp(kind, *betas, eps)) for kind, betas, eps, _ in cases]
        fused = _fused_float64(make_problem(setting, bounds), specs, STEPS)
        for k, (kind, (b1, b2), eps, _) in enumerate(cases):
            label = f"{kind} β=({b1}, {b2}) ε={eps} F={bounds}"
            ref = reference(coefs, LR, b1, b2, eps, kind, *bounds)
            ends.setdefault((kind, bounds), set()).update(e for e in bounds if np.any(ref == e))
            problem = make_problem(setting, bounds)
            trial, _ = trial_trajectory(problem, resolve(kind, specs[k][1]).build, STEPS)
            for engine, xs in (("trial", trial), ("fused", fused[k])):
                dx = float(np.max(np.abs(xs - ref)))
                worst[engine] = max(worst[engine], dx)
                assert dx <= REFERENCE_TOLERANCE, f"{engine}: {label}: max |Δx| = {dx:.3g}"
    # the clamp is exercised: every rule sits on an end of the non-default F, and each end of each F is reached
    assert all(ends[kind, BOUNDS[1]] for kind in PAPER_FAMILY), ends
    for bounds in BOUNDS:
        assert set().union(*(ends[kind, bounds] for kind in PAPER_FAMILY)) == set(bounds), (bounds, ends)
    print(f"worst |Δx| vs the reference ({setting}): {worst}")


# --- fused ↔ Trial over the whole zoo and its options, both dtypes ------------------------------------------


def _zoo_variants() -> list[tuple[str, dict]]:
    """Every fused optimizer with each value of ε and (β1, β2) it takes; lr = :data:`LR`."""
    out = []
    for name in ZOO:
        hp = resolve(name).hp
        if not resolve(name).fused:
            continue
        eps_values = EPSILONS if "eps" in hp else [None]
        beta_values = BETAS if "beta2" in hp else ([(0.9, None), (0.0, None)] if "beta1" in hp else [(None, None)])
        for eps, (b1, b2) in itertools.product(eps_values, beta_values):
            given = {"lr": LR, "eps": eps, "beta1": b1, "beta2": b2}
            out.append((name, {k: v for k, v in given.items() if v is not None}))
    return out


#: The fused engine copies torch's float arithmetic except its CPU sqrt (MKL, ±1 ulp on ~15 % of float32 and
#: ~0.5 % of float64 inputs), so the engines differ by a few ulps. Measured worst |Δx| over _zoo_variants() ×
#: BOUNDS × both settings at 300 steps: 6.0e-8 in float32 (one ulp of |x| near 1) and 2.2e-16 in float64 (one
#: ulp). The tolerances allow ~15 and ~45 ulps.
ENGINE_TOLERANCE = {"float32": 1e-6, "float64": 1e-14}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("setting", ["online", "stochastic"])
def test_fused_equals_the_trial_for_every_option_and_both_feasible_sets(setting, dtype, trial_trajectory):
    variants = _zoo_variants()
    assert len(variants) >= 40
    for bounds in BOUNDS:
        problem = make_problem(setting, bounds, dtype)
        xs: list[np.ndarray] = []
        runs = [FusedRun(resolve(name, hp)) for name, hp in variants]
        simulate([problem], runs, STEPS, log_every=1, on_log=lambda t, x, r, xs=xs: xs.append(x), dtype=dtype)
        fused = np.concatenate(xs, axis=1).astype(np.float64)
        for k, (name, hp) in enumerate(variants):
            trial, _ = trial_trajectory(make_problem(setting, bounds, dtype), resolve(name, hp).build, STEPS)
            dx = float(np.max(np.abs(fused[k] - trial)))
            assert dx <= ENGINE_TOLERANCE[dtype], f"{name} {hp} F={bounds}: max |Δx| = {dx:.3g}"
            assert np.unique(trial).size >= 2, f"{name} {hp}: x must move"  # SGD at α = 0.5 jumps end to end


def test_the_iterate_reaches_every_bound_in_both_engines():
    """The clamp is exercised at both ends of a feasible set other than [−1, 1]: plain SGD on the online
    problem walks to the upper end in the common steps and is thrown to the lower end by the rare one."""
    problem = make_problem("online", (-2.0, 0.5), "float32")
    xs = []
    simulate([problem], [FusedRun(resolve("sgd", {"lr": 0.01}))], 202, log_every=1, on_log=lambda t, x, r: xs.append(x))
    x = np.concatenate(xs, axis=1)[0]
    # t = 1: 0 − 0.01·1010 = −10.1 → −2; then +0.1 a step for 100 steps: −2 + 2.5 reaches 0.5 at t = 26 and stays
    assert x[0] == -2.0
    assert x[25] == pytest.approx(0.5) and x[24] < 0.5
    assert x[100] == 0.5 and x[101] == -2.0  # t = 102 is rare again


# --- the streams, pinned to values written here ------------------------------------------------------------


def test_the_online_schedule_is_pinned():
    """Rare at t ≡ 1 (mod period), t 1-based: t = 1, 102, 203 for the paper's 101; 1, 4, 7 for Theorem 1's 3."""
    coefs = Online().coefs(1, 305)
    assert np.flatnonzero(coefs == 1010.0).tolist() == [0, 101, 202, 303]
    assert set(coefs[coefs != 1010.0]) == {-10.0}
    assert np.flatnonzero(PeriodicStream(3).rare(1, 10)).tolist() == [0, 3, 6, 9]
    assert PeriodicStream(101).rare(101, 3).tolist() == [False, True, False]  # a window not starting at 1


def _independent_rare_steps(seed: int, p: float, block: int, first: int) -> list[int]:
    """The stochastic stream's definition, written again here: block b draws from
    default_rng(SeedSequence(seed, spawn_key=(b,))), step t = b·block + i + 1 is rare iff its uniform < p."""
    steps = []
    for b in itertools.count():
        u = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(b,))).random(block)
        steps += [b * block + int(i) + 1 for i in np.flatnonzero(u < p)]
        if len(steps) >= first:
            return steps[:first]


#: the first rare steps of the paper's stream (p = 0.01, blocks of 65,536), by seed, as the generator above
#: computed them once; a stream that shifts by one step, or draws differently, fails here
PINNED = {
    0: [18, 265, 328, 355, 380, 423, 490, 502],
    1: [101, 376, 516, 693, 837, 851, 915, 1028],
    5: [43, 44, 56, 311, 447, 471, 508, 1006],
}


@pytest.mark.parametrize("seed", list(PINNED))
def test_the_stochastic_stream_is_pinned(seed):
    assert _independent_rare_steps(seed, 0.01, 1 << 16, 8) == PINNED[seed]
    coefs = Stochastic(seed=seed).coefs(1, PINNED[seed][-1])
    assert (np.flatnonzero(coefs == 1010.0) + 1).tolist() == PINNED[seed]
    # across a block boundary, with a small block: the same definition, read in windows of any size
    stream = BernoulliStream(0.3, seed, block_size=7)
    whole = np.flatnonzero(stream.rare(1, 40)) + 1
    assert whole.tolist() == _independent_rare_steps(seed, 0.3, 7, len(whole))
    pieces = np.concatenate([stream.rare(s, 3) for s in range(1, 41, 3)])[:40]
    assert np.array_equal(pieces, stream.rare(1, 40))


@pytest.mark.parametrize("engine", ["fused", "trial"])
def test_each_engine_plays_the_pinned_stream(engine, trial_trajectory):
    """Plain SGD with lr 1e-3 from x₁ = 0 on seed 0: x_{t+1} = clamp(x_t − 1e-3·c_t), c_t = 1010 exactly at the
    pinned steps, so x is known in closed form; an engine that reads step t + 1 for t fails at t = 17."""
    rare = set(PINNED[0])
    x, expected = 0.0, []
    for t in range(1, 600):
        x = min(max(x - 1e-3 * (1010.0 if t in rare else -10.0), -1.0), 1.0)
        expected.append(x)
    problem = Stochastic(seed=0, dtype="float64")
    choice = resolve("sgd", {"lr": 1e-3})
    if engine == "fused":
        xs = []
        simulate([problem], [FusedRun(choice)], 599, log_every=1, on_log=lambda t, x, r: xs.append(x), dtype="float64")
        got = np.concatenate(xs, axis=1)[0]
    else:
        got, _ = trial_trajectory(problem, choice.build, 599)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)  # 599 float64 additions of exact-ish steps


def test_reference_loops_see_a_large_epsilon():
    """Sanity of the sweep itself: with the large ε every rule of the family moves x differently from ε = 0 (by
    0.009 to 0.99 here), and the rules differ from each other, so a mistake in where ε enters cannot hide below
    the tolerance."""
    coefs = Online().coefs(1, STEPS)
    finals = {}
    for kind in PAPER_FAMILY:
        a = reference(coefs, LR, 0.9, 0.99, 0.0, kind, -1.0, 1.0)
        b = reference(coefs, LR, 0.9, 0.99, EPSILONS[-1], kind, -1.0, 1.0)
        assert np.max(np.abs(a - b)) > 1e-3, kind
        finals[kind] = b
    for a, b in itertools.combinations(PAPER_FAMILY, 2):
        assert np.max(np.abs(finals[a] - finals[b])) > 1e-6, (a, b)
