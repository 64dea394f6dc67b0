"""The fused engine: the same problems, optimizers and projection as the Trial, in a compiled loop over t.

Usage::

    from amsgrad_repro.fused import FusedRun, simulate
    from amsgrad_repro.optimizers import Hyper
    from amsgrad_repro.problems import Online

    runs = [FusedRun("adam", Hyper(lr=1e-3)), FusedRun("amsgrad", Hyper(lr=1e-3))]
    result = simulate([Online()], runs, steps=10_000_000)
    result.x, result.average_regret        # one value per run

Many runs go through one call (optimizers × learning rates × problems/seeds), split over the cores with
numba's ``prange``. Time advances in windows of at most ``window`` steps: each window's slopes c_t are read
from the problems' streams, the kernel advances every run through the window, and ``on_log`` receives the
snapshots taken at t = log_every, 2·log_every, … and at t = T. Memory is O(window · problems), never O(T).

Arithmetic follows ``torch.optim.Adam``'s single-tensor CPU path step by step, in float32:

- t is a 1-based step count; the bias corrections 1 − β^t and the step size α / (1 − β1^t) are computed in
  float64 as torch computes them in Python, and rounded to float32 where torch's kernels round them;
- m ← lerp(m, g, 1 − β1) and v ← β2·v + (1 − β2)·g² are fused multiply-adds in torch's CPU kernels; we
  emulate each FMA by one float64 evaluation rounded once to float32 (a product of two float32 is exact
  in float64);
- AMSGrad (torch's variant): v̂ ← max(v̂, v) over the *uncorrected* v; denominator √v̂ / √(1 − β2^t) + ε,
  ε added after the square root;
- x ← x + (−step_size · m) / denom, then the clamp onto [lo, hi].

The regret term c_t·(x_t − x*) is accumulated in float64 in step order, as the Trial's metric does. The
compiled kernels are cached on disk (numba ``cache=True``), so only the first run pays the JIT.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numba
import numpy as np

from .optimizers import Hyper
from .problems import LinearProblem

#: optimizer names the fused engine implements
FUSED_OPTIMIZERS = ("adam", "amsgrad")


@dataclass(frozen=True)
class FusedRun:
    """One run: an optimizer name from :data:`FUSED_OPTIMIZERS`, its hyperparameters, and which problem
    (index into the ``problems`` given to :func:`simulate`) it plays."""

    optimizer: str
    hyper: Hyper = field(default_factory=Hyper)
    problem: int = 0

    def __post_init__(self) -> None:
        if self.optimizer not in FUSED_OPTIMIZERS:
            raise ValueError(
                f"the fused engine has no optimizer {self.optimizer!r} (it has {', '.join(FUSED_OPTIMIZERS)});"
                " use --engine trial for torch.optim classes"
            )


@dataclass
class FusedResult:
    """State after :func:`simulate`: x (float32 iterate after the last update), R_t / t, steps done."""

    x: np.ndarray
    average_regret: np.ndarray
    steps_done: int
    interrupted: bool = False


@numba.njit(cache=True, parallel=True)
def _adam_window(
    coefs,  # (n_problems, n) float64: c_t for t = t0 .. t0 + n - 1
    problem_of,  # (R,) int64
    x,  # (R,) float32, in/out
    m,  # (R,) float32, in/out
    v,  # (R,) float32, in/out
    vmax,  # (R,) float32, in/out
    regret,  # (R,) float64, in/out: R_{t-1}
    bc_done,  # (R,) bool, in/out: both bias corrections are exactly 1.0 from here on
    amsgrad,  # (R,) bool
    lr,
    beta1,
    beta2,
    eps,  # (R,) float64
    lo,
    hi,
    x_star,  # (R,) float64
    t0,
    n,
    log_every,
    last_t,
    snap_x,  # (R, k) float32, out
    snap_r,  # (R, k) float64, out
):
    n_runs = x.shape[0]
    for r in numba.prange(n_runs):
        row = problem_of[r]
        xr, mr, vr, vmr, reg = x[r], m[r], v[r], vmax[r], regret[r]
        b1, b2, a = beta1[r], beta2[r], lr[r]
        w1 = np.float32(1.0 - b1)  # lerp weight, as torch casts the Python float
        small = abs(w1) < np.float32(0.5)
        one_minus_w1 = np.float32(1.0) - w1
        b2f = np.float32(b2)
        c2f = np.float32(1.0 - b2)
        epsf = np.float32(eps[r])
        lof, hif = np.float32(lo[r]), np.float32(hi[r])
        xs = x_star[r]
        done = bc_done[r]
        ams = amsgrad[r]
        k = 0
        for i in range(n):
            t = t0 + i
            c = coefs[row, i]
            # regret term of the point played at step t, f_t(x_t) - f_t(x*), in float64
            reg += c * (np.float64(xr) - xs)
            g = np.float32(c)  # ∇f_t(x_t) = c_t, as torch's float32 autograd gives it
            # m_t = β1·m_{t−1} + (1 − β1)·g_t     (torch: exp_avg.lerp_(grad, 1 − β1), an FMA)
            d = np.float32(g - mr)
            if small:
                mr = np.float32(np.float64(mr) + np.float64(w1) * np.float64(d))
            else:
                mr = np.float32(np.float64(g) - np.float64(d) * np.float64(one_minus_w1))
            # v_t = β2·v_{t−1} + (1 − β2)·g_t²     (torch: mul_(β2).addcmul_(g, g, 1 − β2), an FMA)
            vr = np.float32(np.float64(np.float32(vr * b2f)) + np.float64(np.float32(c2f * g)) * np.float64(g))
            # bias corrections in float64 (torch computes them in Python); exactly 1.0 once β^t < 2^-54
            if done:
                step_size = a
                bc2_sqrt = 1.0
            else:
                bc1 = 1.0 - b1 ** np.float64(t)
                bc2 = 1.0 - b2 ** np.float64(t)
                step_size = a / bc1
                bc2_sqrt = bc2**0.5
                done = bc1 == 1.0 and bc2 == 1.0
            if ams:
                # v̂_t = max(v̂_{t−1}, v_t) over the uncorrected v (torch's AMSGrad)
                vmr = max(vmr, vr)
                denom = np.float32(np.sqrt(vmr) / np.float32(bc2_sqrt)) + epsf
            else:
                denom = np.float32(np.sqrt(vr) / np.float32(bc2_sqrt)) + epsf
            # x_{t+1} = Π_F(x_t − α_t·m̂_t / (√v̂_t + ε))     (torch: addcdiv_(m, denom, −step_size))
            xr = xr + np.float32(np.float32(-step_size) * mr) / denom
            xr = min(max(xr, lof), hif)
            if t % log_every == 0 or t == last_t:
                snap_x[r, k] = xr
                snap_r[r, k] = reg / t
                k += 1
        x[r], m[r], v[r], vmax[r], regret[r], bc_done[r] = xr, mr, vr, vmr, reg, done


class _DeferSigint:
    """Turn Ctrl-C into a flag checked between windows, so a run always stops at a window boundary
    (the compiled kernel cannot be interrupted half-way through a window anyway)."""

    def __init__(self) -> None:
        self.hit = False
        self._old = None

    def __enter__(self) -> _DeferSigint:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.hit = True

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def log_points(t0: int, n: int, log_every: int, last_t: int) -> np.ndarray:
    """The steps t in [t0, t0 + n) where scalars are written: multiples of ``log_every``, and ``last_t``."""
    first = -(-t0 // log_every) * log_every
    ts = np.arange(first, min(t0 + n, last_t + 1), log_every, dtype=np.int64)
    if t0 <= last_t < t0 + n and (len(ts) == 0 or ts[-1] != last_t):
        ts = np.append(ts, last_t)
    return ts


def simulate(
    problems: Sequence[LinearProblem],
    runs: Sequence[FusedRun],
    steps: int,
    log_every: int = 1000,
    on_log: Callable[[np.ndarray, np.ndarray, np.ndarray], None] | None = None,
    on_window: Callable[[int], None] | None = None,
    window: int = 1 << 16,
) -> FusedResult:
    """Run every run for ``steps`` steps; x starts at each problem's x0.

    Args:
        problems: the problems (streams, constants, F, x*) the runs play; a run picks one by index.
        runs: what to run.
        steps: T.
        log_every: snapshot interval; a snapshot is also taken at t = T.
        on_log: called after each window as ``on_log(ts, x, average_regret)`` with the window's snapshot steps
            (k,) and the values (R, k).
        on_window: called after each window with the number of steps it advanced (for a progress bar).
        window: steps per kernel call (memory is O(window · len(problems))).

    Ctrl-C stops at the end of the current window (the compiled loop cannot stop inside one): the last
    completed step is reported through ``on_log`` if it was not a log point, and the result says
    ``interrupted=True``.
    """
    if steps < 1 or log_every < 1 or window < 1:
        raise ValueError("steps, log_every and window must be >= 1")
    if not runs:
        raise ValueError("no runs")
    for run in runs:
        if not 0 <= run.problem < len(problems):
            raise ValueError(f"run {run} names problem {run.problem}, but there are {len(problems)}")
    n_runs = len(runs)
    chosen = [problems[run.problem] for run in runs]
    problem_of = np.array([run.problem for run in runs], dtype=np.int64)
    x = np.array([p.x.item() for p in chosen], dtype=np.float32)
    m = np.zeros(n_runs, np.float32)
    v = np.zeros(n_runs, np.float32)
    vmax = np.zeros(n_runs, np.float32)
    regret = np.zeros(n_runs, np.float64)
    bc_done = np.zeros(n_runs, np.bool_)
    amsgrad = np.array([run.optimizer == "amsgrad" for run in runs])
    lr = np.array([run.hyper.lr for run in runs], np.float64)
    beta1 = np.array([run.hyper.betas[0] for run in runs], np.float64)
    beta2 = np.array([run.hyper.betas[1] for run in runs], np.float64)
    eps = np.array([run.hyper.eps for run in runs], np.float64)
    lo = np.array([p.bounds.lo for p in chosen], np.float64)
    hi = np.array([p.bounds.hi for p in chosen], np.float64)
    x_star = np.array([p.x_star for p in chosen], np.float64)
    coefs = np.empty((len(problems), min(window, steps)), np.float64)

    t0 = 1
    logged_t = 0
    interrupted = False
    with _DeferSigint() as sigint:
        while t0 <= steps:
            if sigint.hit:
                interrupted = True
                break
            n = min(window, steps - t0 + 1)
            for j, problem in enumerate(problems):
                coefs[j, :n] = problem.coefs(t0, n)
            ts = log_points(t0, n, log_every, steps)
            snap_x = np.empty((n_runs, len(ts)), np.float32)
            snap_r = np.empty((n_runs, len(ts)), np.float64)
            _adam_window(
                coefs, problem_of, x, m, v, vmax, regret, bc_done, amsgrad,
                lr, beta1, beta2, eps, lo, hi, x_star, t0, n, log_every, steps, snap_x, snap_r,
            )  # fmt: skip
            if on_log is not None and len(ts):
                on_log(ts, snap_x, snap_r)
                logged_t = int(ts[-1])
            if on_window is not None:
                on_window(n)
            t0 += n
    done = t0 - 1
    if interrupted and on_log is not None and done > logged_t:
        # report the last completed step, so what is logged ends where the run stopped
        on_log(np.array([done]), x[:, None].copy(), (regret / done)[:, None])
    average = regret / done if done else np.full(n_runs, np.nan)
    return FusedResult(x=x.copy(), average_regret=average, steps_done=done, interrupted=interrupted)
