"""The rule that turns a run's logged x_t and R_t/t into a verdict: ``converges``, ``fails`` or ``undecided``.

Usage::

    from amsgrad_repro.synthetic.rule import RULE, judge, overall

    v = judge(ts, xs, rs, x_star=-1.0, lo=-1.0, hi=1.0, steps=200_000)
    v.verdict, v.distance, v.regret            # "fails", (d at T/2, d at T), (R/T at T/2, R/T at T)
    overall([v1, v2, v3])                      # a problem's verdict from its runs'

The paper's failure (Theorems 1-3) is an iterate that goes to, or stays at, a point other than x*, with R_t/t not
tending to 0; its fix converges, R_t/t → 0. On these linear problems x* is an end of F = [lo, hi] and the worst
point the other end, so one number says where a run is: the distance of its **time-averaged iterate** from x*,
as a fraction of F's width, d ∈ [0, 1] (the average over the last quarter of the steps so far, so that a run
oscillating with a constant step size is judged by where it sits, not by where its last step left it). It is
measured twice, at T/2 and at T:

- ``fails``: d ≥ :attr:`Rule.far` (¾: the time-averaged iterate is within a quarter of F's width of the worst
  point) at T/2 *and* at T;
- ``converges``: d ≤ :attr:`Rule.near` (¼: within a quarter of F's width of x*) at T/2 *and* at T;
- ``undecided``: anything else (between the bands, or in different bands at T/2 and T): more steps would settle
  it, and the verdict says how many to try (4T). A run that hardly moves from x₁ = 0, the middle of F, is
  ``undecided``, not ``fails`` (AdaGrad's effective step after the first rare gradient is that small).

Why the iterate and not R_t/t itself: f_t is linear, so the regret against the expected loss F(x) = c̄·x is
c̄·Σ(x_t − x*), a function of the average iterate; an average iterate that stays at distance d from x* is an
average regret that stays at c̄·(hi − lo)·d, not tending to 0. R_t/t as logged adds, on the stochastic problems,
the noise of the rare draws (at T = 10⁶ its standard deviation is about 1010·√(0.01/T) ≈ 0.1, a quarter of the
value Adam's failure gives), so it is recorded (summary.json, TensorBoard) but does not decide.

The two checkpoints make the rule stable: a run decided at T sits in the same band at T/2, so doubling the steps
moves a run from ``undecided`` to a verdict, and from ``converges`` to ``fails`` (or back) only if its own time
average crosses half of F's width between T and 2T (tests/test_verdict.py runs the zoo at T and 2T and finds no
such flip). A problem's verdict (:func:`overall`): ``fails`` if any of its runs fails (the trap is there at a
setting a user could choose), else ``converges`` if any converges, else ``undecided``, with the counts beside it.

Choices this makes that the paper does not (it plots x_t and R_t/t and says Adam "converges to the worst point"):
the bands (within ¼ of F's width of x* or of the worst point), the averaging window (the last quarter), and
judging at two points rather than fitting a rate. Each is a field of :class:`Rule`, recorded in summary.json.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

VERDICTS = ("converges", "fails", "undecided")


@dataclasses.dataclass(frozen=True)
class Rule:
    """The rule's numbers (module docstring)."""

    near: float = 0.25
    far: float = 0.75
    window: float = 0.25  # the time average is over the last quarter of the steps so far


RULE = Rule()


@dataclasses.dataclass(frozen=True)
class Judged:
    """One run's verdict and the numbers behind it (at T/2 and at T)."""

    verdict: str
    distance: tuple[float, float]
    average_x: tuple[float, float]
    regret: tuple[float, float]
    why: str

    def describe(self) -> dict:
        return dataclasses.asdict(self)


def _at(ts: np.ndarray, values: np.ndarray, t: int) -> float:
    """The logged value at step t (the last logged at or before it)."""
    i = int(np.searchsorted(ts, t, side="right")) - 1
    return float(values[i]) if i >= 0 else float("nan")


def _average(ts: np.ndarray, xs: np.ndarray, t: int, window: float) -> float:
    keep = (ts > t * (1 - window)) & (ts <= t)
    return float(xs[keep].mean()) if keep.any() else float("nan")


def judge(
    ts: np.ndarray, xs: np.ndarray, rs: np.ndarray, x_star: float, lo: float, hi: float, steps: int, rule: Rule = RULE
) -> Judged:
    """A run's verdict from its logged steps ``ts``, iterates ``xs`` and R_t/t ``rs`` over ``steps`` steps (the
    log must have points at or before T/2 and at T; :func:`log_every_for` gives such an interval)."""
    half = steps // 2
    xbar = (_average(ts, xs, half, rule.window), _average(ts, xs, steps, rule.window))
    width = hi - lo
    d = tuple(abs(x - x_star) / width for x in xbar)
    r = (_at(ts, rs, half), _at(ts, rs, steps))
    if not all(np.isfinite(d)):
        return Judged("undecided", d, xbar, r, "a non-finite x or R_t/t: the run diverged or logged nothing")
    if d[0] >= rule.far and d[1] >= rule.far:
        why = f"the time-averaged x is {xbar[0]:+.3f} at T/2 and {xbar[1]:+.3f} at T ({d[1]:.2f} of F from x*)"
        return Judged("fails", d, xbar, r, why)
    if d[0] <= rule.near and d[1] <= rule.near:
        why = f"the time-averaged x is {xbar[0]:+.3f} at T/2 and {xbar[1]:+.3f} at T (within {rule.near:g} of F)"
        return Judged("converges", d, xbar, r, why)
    why = (f"the time-averaged x is {xbar[0]:+.3f} at T/2 and {xbar[1]:+.3f} at T; R_t/t {r[0]:.4g} then "
           f"{r[1]:.4g}: try --steps {4 * steps:,}")  # fmt: skip
    return Judged("undecided", d, xbar, r, why)


def overall(judged: Sequence[Judged]) -> dict:
    """A problem's verdict from its runs': fails if any fails, else converges if any converges, else undecided;
    with the counts."""
    counts = {v: sum(j.verdict == v for j in judged) for v in VERDICTS}
    verdict = "fails" if counts["fails"] else ("converges" if counts["converges"] else "undecided")
    return {"verdict": verdict, "counts": counts, "runs": len(judged)}


def log_every_for(steps: int) -> int:
    """A log interval with a point at T/2 (T is always logged) and about 400 points in all."""
    half = max(steps // 2, 1)
    k = max(half // 200, 1)
    while half % k:
        k -= 1
    return k
