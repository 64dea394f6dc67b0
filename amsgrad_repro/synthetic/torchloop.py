"""The torch engine: any ``torch.optim.Optimizer`` on the synthetic problems, without torchbearer's per-step
machinery, many runs per ``step()`` call, proven equal to the Trial step by step.

Usage::

    from amsgrad_repro.synthetic.torchloop import TorchRun, run_torch

    runs = [TorchRun(problem=ProblemConfig("stochastic", seed=s).functions(), group=0) for s in range(3)]
    groups = [{"lr": 1e-3, "betas": (0.9, 0.99)}]                 # one param group per distinct setting
    result = run_torch(torch.optim.Adam, {}, runs, groups, steps=100_000, log_every=1000)
    result.x, result.average_regret, result.logged                 # per run, in ``runs``' order

What one step is, for every run at once (the Trial's step, :mod:`.trial`, written out):

1. x_t is read (the point played);
2. the gradient of f_t(x) = c_t·x is c_t, rounded to x's dtype, exactly what autograd gives the Trial; it is set
   as ``p.grad`` (a fresh row of a window of slopes: an optimizer that changes its gradient in place changes
   nothing the next step reads);
3. ``optimizer.step()``; then x is clamped onto F (the Trial's ``Projection`` hook does the same inside step);
4. R_t = R_{t−1} + c_t·(x_t − x*), in float64, from the iterate as stored, in step order (the Trial's metric).

**Many runs per step.** The runs of one param group (the same optimizer settings, different problems or seeds)
are the coordinates of one parameter vector, so one ``step()`` moves them all. That is exact only for an
optimizer that treats each coordinate alone (Adam, SGD, Lion, … but not LAMB's trust ratio or Adafactor's
factored moments, which mix a tensor's coordinates), so it is *checked, not assumed*: :func:`layout_for` runs
two runs of every group a few hundred steps batched and one run at a time and compares them to the bit. If they
differ, the runs become separate 0-d parameters of the group (exact for any optimizer whose update is per
parameter); if those differ too, each run gets its own optimizer. Settings that differ (lr, β's) are separate
param groups of one optimizer, so a step costs one ``step()`` call whatever the battery.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import torch

from .functions import LinearFunctions

#: steps of slopes held at once (memory: runs × WINDOW × 12 bytes)
WINDOW = 4096
#: steps the batched layout is checked over, against one run at a time
PROBE_STEPS = 300
#: how the runs of a group are laid out: one vector, separate 0-d parameters, or separate optimizers
LAYOUTS = ("vector", "parameters", "optimizers")


@dataclasses.dataclass(frozen=True)
class TorchRun:
    """One run: the problem it plays (its slopes, F, x*) and the param group (optimizer settings) it uses."""

    problem: LinearFunctions
    group: int = 0


@dataclasses.dataclass
class TorchResult:
    """Per run, in the caller's order: the final x and R_T/T, the logged points ``(steps, x, R_t/t)``, and the
    steps done (fewer than asked if a signal stopped it: ``interrupted``)."""

    x: np.ndarray
    average_regret: np.ndarray
    logged: tuple[np.ndarray, np.ndarray, np.ndarray]
    steps_done: int
    interrupted: bool
    layout: str


class _Lanes:
    """The parameters and optimizers of one layout: ``params[k]`` with the runs it holds, ``optimizers``."""

    def __init__(self, cls, kwargs: dict, runs: Sequence[TorchRun], groups: Sequence[dict], layout: str, dtype):
        self.order: list[list[int]] = []  # per parameter, the runs (indices into runs) it holds
        self.params: list[torch.nn.Parameter] = []
        specs: list[list[dict]] = []  # per optimizer, its param groups
        for g, settings in enumerate(groups):
            members = [i for i, r in enumerate(runs) if r.group == g]
            if not members:
                continue
            if layout == "vector":
                chunks = [members]
            else:
                chunks = [[i] for i in members]
            new = []
            for chunk in chunks:
                x0 = [runs[i].problem.x0 for i in chunk]
                value = torch.tensor(x0 if layout == "vector" else x0[0], dtype=dtype)
                self.params.append(torch.nn.Parameter(value))
                self.order.append(chunk)
                new.append(self.params[-1])
            if layout == "optimizers":
                specs += [[{"params": [p], **settings}] for p in new]
            else:
                specs.append([{"params": new, **settings}])
        if layout == "optimizers":
            self.optimizers = [build(cls, spec, kwargs) for spec in specs]
        else:  # every group in one optimizer: one step() call a step
            self.optimizers = [build(cls, [group for spec in specs for group in spec], kwargs)]
        self.lo = [torch.tensor([runs[i].problem.bounds.lo for i in c], dtype=dtype) for c in self.order]
        self.hi = [torch.tensor([runs[i].problem.bounds.hi for i in c], dtype=dtype) for c in self.order]
        if layout != "vector":
            self.lo, self.hi = [t[0] for t in self.lo], [t[0] for t in self.hi]


def build(cls: type[torch.optim.Optimizer], params, kwargs: dict) -> torch.optim.Optimizer:
    """``cls(params, **kwargs)``, put in training mode if it has one: an optimizer with a ``train()`` method
    (Schedule-Free's convention: ``optimizer.train()`` before training, ``.eval()`` to evaluate) is asked for
    it once, so the point it plays, and the battery measures, is its training iterate."""
    optimizer = cls(params, **kwargs)
    train = getattr(optimizer, "train", None)
    if callable(train):
        train()
    return optimizer


def simulate_torch(
    cls: type[torch.optim.Optimizer],
    kwargs: dict,
    runs: Sequence[TorchRun],
    groups: Sequence[dict],
    steps: int,
    log_every: int,
    layout: str = "vector",
    stop: Callable[[], bool] | None = None,
    on_window: Callable[[int], None] | None = None,
) -> TorchResult:
    """Every run for ``steps`` steps in the given ``layout`` (see the module docstring); snapshots of x and R_t/t
    at t = log_every, 2·log_every, … and T. ``stop()`` is asked between windows (a signal: the result then says
    ``interrupted``, with the last completed step logged)."""
    if steps < 1 or log_every < 1:
        raise ValueError("steps and log_every must be >= 1")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    dtypes = {r.problem.dtype for r in runs}
    if len(dtypes) != 1:
        raise ValueError(f"the runs of one call share a dtype, got {sorted(dtypes)}")
    dtype = getattr(torch, dtypes.pop())
    lanes = _Lanes(cls, kwargs, runs, groups, layout, dtype)
    n = len(runs)
    x_star = np.array([r.problem.x_star for r in runs])
    regret = np.zeros(n)
    ts_out: list[np.ndarray] = []
    xs_out: list[np.ndarray] = []
    rs_out: list[np.ndarray] = []
    x_now = np.array([r.problem.x0 for r in runs], np.float64)  # x_t before the step: the point played
    for k, chunk in enumerate(lanes.order):  # the iterate as stored (x0 rounded to the dtype)
        x_now[chunk] = lanes.params[k].detach().double().reshape(-1).numpy()
    bounds = [(lanes.lo[k], lanes.hi[k]) for k in range(len(lanes.params))]
    same = len({(r.problem.bounds.lo, r.problem.bounds.hi) for r in runs}) == 1
    if same:  # one F for every run: the Trial's own clamp_(lo, hi) with Python floats
        bounds = [(runs[0].problem.bounds.lo, runs[0].problem.bounds.hi)] * len(lanes.params)
    t0, interrupted = 1, False
    with torch.no_grad():
        while t0 <= steps:
            if stop is not None and stop():
                interrupted = True
                break
            w = min(WINDOW, steps - t0 + 1)
            coefs = np.stack([r.problem.coefs(t0, w) for r in runs])  # (n, w) float64
            grads = [torch.from_numpy(np.ascontiguousarray(coefs[c].T)).to(dtype) for c in lanes.order]  # (w, len)
            after = [torch.empty((w, len(c)), dtype=dtype) for c in lanes.order]  # x_{t+1}, step by step
            params, optimizers = lanes.params, lanes.optimizers
            vector = [p.dim() == 1 for p in params]
            for i in range(w):
                for k, p in enumerate(params):
                    p.grad = grads[k][i] if vector[k] else grads[k][i, 0]
                for opt in optimizers:
                    opt.step()
                for k, p in enumerate(params):
                    p.clamp_(*bounds[k])
                    after[k][i].copy_(p)
            xs = np.empty((n, w))
            for k, chunk in enumerate(lanes.order):
                xs[chunk] = after[k].double().numpy().T
            played = np.concatenate([x_now[:, None], xs[:, :-1]], axis=1)
            terms = coefs * (played - x_star[:, None])  # c_t·(x_t − x*), float64, as the Trial's metric
            cumulative = regret[:, None] + np.cumsum(terms, axis=1)  # in step order, as the Trial sums
            t = np.arange(t0, t0 + w)
            keep = (t % log_every == 0) | (t == steps)
            ts_out.append(t[keep])
            xs_out.append(xs[:, keep])
            rs_out.append(cumulative[:, keep] / t[keep])
            regret, x_now = cumulative[:, -1].copy(), xs[:, -1].copy()
            t0 += w
            if on_window is not None:
                on_window(w)
    done = t0 - 1
    if interrupted and done and (not ts_out or ts_out[-1].size == 0 or ts_out[-1][-1] != done):
        ts_out.append(np.array([done]))
        xs_out.append(x_now[:, None])
        rs_out.append((regret / done)[:, None])
    logged = (
        np.concatenate(ts_out) if ts_out else np.zeros(0, np.int64),
        np.concatenate(xs_out, axis=1) if xs_out else np.zeros((n, 0)),
        np.concatenate(rs_out, axis=1) if rs_out else np.zeros((n, 0)),
    )
    average = regret / done if done else np.full(n, np.nan)
    return TorchResult(x_now, average, logged, done, interrupted, layout)


def layout_for(cls: type[torch.optim.Optimizer], kwargs: dict, runs: Sequence[TorchRun], groups: Sequence[dict]) -> str:
    """The fastest layout that is exact for this optimizer on these runs: each candidate (``vector``, then
    ``parameters``) runs :data:`PROBE_STEPS` steps and must equal one optimizer per run to the bit, in every x
    and every R_t/t; otherwise ``optimizers``. A single run is always ``vector`` (one coordinate)."""
    if len(runs) == 1:
        return "vector"
    steps = PROBE_STEPS
    # two runs of each group are enough to see a coupling of coordinates (or of parameters), and cost less
    probe = [r for g in range(len(groups)) for r in [r for r in runs if r.group == g][:2]]
    reference = simulate_torch(cls, kwargs, probe, groups, steps, 1, layout="optimizers")
    for layout in ("vector", "parameters"):
        try:
            got = simulate_torch(cls, kwargs, probe, groups, steps, 1, layout=layout)
        except Exception:  # an optimizer that refuses a shape (a 1-d tensor, several parameters)
            continue
        same = [np.array_equal(a, b, equal_nan=True) for a, b in zip(got.logged[1:], reference.logged[1:], strict=True)]
        if all(same):
            return layout
    return "optimizers"


def run_torch(
    cls: type[torch.optim.Optimizer],
    kwargs: dict,
    runs: Sequence[TorchRun],
    groups: Sequence[dict],
    steps: int,
    log_every: int,
    stop: Callable[[], bool] | None = None,
    on_window: Callable[[int], None] | None = None,
) -> TorchResult:
    """:func:`simulate_torch` in the fastest exact layout (:func:`layout_for`)."""
    layout = layout_for(cls, kwargs, runs, groups)
    return simulate_torch(cls, kwargs, runs, groups, steps, log_every, layout, stop, on_window)
