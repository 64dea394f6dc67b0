"""The fused engine: the same problems, optimizers and projection as the Trial, in a compiled loop over t.

Usage::

    from amsgrad_repro.fused import FusedRun, simulate
    from amsgrad_repro.problems import Online

    runs = [FusedRun.of("adam"), FusedRun.of("amsgrad"), FusedRun.of("sgd,lr=0.01")]
    result = simulate([Online()], runs, steps=10_000_000)
    result.x, result.average_regret        # one value per run

Many runs go through one call (optimizers × hyperparameters × problems/seeds), split over the cores with
numba's ``prange``. Time advances in windows of at most ``window`` steps: each window's slopes c_t are read
from the problems' streams, the kernel advances every run through the window, and ``on_log`` receives the
snapshots taken at t = log_every, 2·log_every, … and at t = T. Memory is O(window · problems), never O(T).

Every optimizer of the zoo (:data:`amsgrad_repro.optimizers.ZOO`) is here, and each one copies its Trial
twin's float32 arithmetic step by step: the torch.optim single-tensor CPU path, or
:mod:`amsgrad_repro.algorithms`, which uses the same tensor ops:

- t is a 1-based step count; scalars torch computes in Python (bias corrections 1 − β^t, step sizes,
  schedules, NAdam's μ_t) are computed in float64 the same way, and rounded to float32 where torch's kernels
  round them;
- torch's CPU kernels for ``lerp_``, ``addcmul_`` and ``add_(…, alpha=…)`` are fused multiply-adds; we
  emulate each FMA by one float64 evaluation rounded once to float32 (a product of two float32 is exact in
  float64); ``addcdiv_`` is (value·t1)/t2 + x, unfused;
- ``sqrt`` is the correctly rounded float32 square root. torch's CPU sqrt (MKL on AVX-512 builds) is not: it
  differs by ±1 ulp on some 15% of inputs, so the engines agree to a few ulps rather than bit for bit;
- the regret term c_t·(x_t − x*) is accumulated in float64 in step order, as the Trial's metric does.

torch counts steps in a float32 tensor, which stops at 2^24 = 16,777,216; we count exactly. Nothing that
reads the count differs by then (every bias correction is exactly 1.0 long before).

The compiled kernel is cached on disk (numba ``cache=True``), so only the first run pays the JIT.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numba
import numpy as np

from .optimizers import Choice, resolve
from .problems import LinearProblem
from .runs import defer_signals

# optimizer kinds in the kernel
K_SGD, K_ADAGRAD, K_RMSPROP, K_ADAM, K_ADAMAX, K_NADAM = range(6)
# float hyperparameter columns
F_LR, F_B1, F_B2, F_EPS, F_MOM, F_ALPHA, F_PSI, F_LAM = range(8)
# int flag columns
I_KIND, I_NESTEROV, I_AMS, I_BIAS, I_LRS, I_B1S, I_B2S = range(7)

_AMS = {None: 0, "paper": 1, "pytorch": 2, "corrected": 3}
#: the Adam family in the kernel: name → (AMSGrad variant, bias correction, AdamNC's β2 schedule)
_ADAM_FAMILY = {
    "adam": (None, True, False),
    "amsgrad-pytorch": ("pytorch", True, False),
    "amsgrad-paper": ("paper", False, False),
    "amsgrad-corrected": ("corrected", True, False),
    "adamnc": (None, False, True),
}
_OTHER_KINDS = {"sgd": K_SGD, "momentum": K_SGD, "nesterov": K_SGD, "adagrad": K_ADAGRAD, "rmsprop": K_RMSPROP,
                "adamax": K_ADAMAX, "nadam": K_NADAM}  # fmt: skip
_LRS = {"constant": 0, "sqrt": 1}
_B1S = {"constant": 0, "exp": 1, "inverse": 2}


@dataclass(frozen=True)
class FusedRun:
    """One run: a resolved optimizer (:func:`amsgrad_repro.optimizers.resolve`) and which problem (index
    into the ``problems`` given to :func:`simulate`) it plays."""

    choice: Choice
    problem: int = 0

    def __post_init__(self) -> None:
        if not self.choice.fused:
            raise ValueError(
                f"the fused engine has no optimizer {self.choice.name!r}: use --engine trial for torch.optim classes"
            )

    @classmethod
    def of(cls, spec: str, problem: int = 0, **overrides: object) -> FusedRun:
        """``FusedRun.of("adam", lr=1e-2)``: resolve ``spec`` with invocation-wide ``overrides``."""
        return cls(resolve(spec, overrides), problem)


def encode(choice: Choice) -> tuple[np.ndarray, np.ndarray]:
    """(float params, int flags) of one run for the kernel."""
    hp, name = choice.hp, choice.name
    f = np.zeros(8, np.float64)
    i = np.zeros(7, np.int64)
    f[F_LR] = hp["lr"]
    f[F_B1], f[F_B2] = hp.get("beta1", 0.0), hp.get("beta2", 0.0)
    f[F_EPS] = hp.get("eps", 0.0)
    f[F_MOM] = hp.get("momentum", 0.0)
    f[F_ALPHA] = hp.get("alpha", 0.0)
    f[F_PSI] = hp.get("momentum_decay", 0.0)
    f[F_LAM] = hp.get("beta1_decay", 1.0)
    i[I_LRS] = _LRS[hp.get("lr_schedule", "constant")]
    i[I_B1S] = _B1S[hp.get("beta1_schedule", "constant")]
    if name in _ADAM_FAMILY:
        variant, bias, adamnc = _ADAM_FAMILY[name]
        i[I_KIND], i[I_AMS], i[I_BIAS], i[I_B2S] = K_ADAM, _AMS[variant], bias, adamnc
    elif name in _OTHER_KINDS:
        i[I_KIND], i[I_NESTEROV] = _OTHER_KINDS[name], name == "nesterov"
    else:
        raise ValueError(f"the fused engine has no optimizer {name!r}")
    return f, i


@dataclass
class FusedResult:
    """State after :func:`simulate`: x (float32 iterate after the last update), R_t / t, steps done."""

    x: np.ndarray
    average_regret: np.ndarray
    steps_done: int
    interrupted: bool = False
    #: Ctrl-C or SIGTERM arrived, possibly during the last window (then the run finished; the caller should stop)
    stop_requested: bool = False


@numba.njit(inline="always")
def _fma(a, b, c):
    """float32 a·b + c with one rounding (what torch's CPU kernels compute for lerp/addcmul/add-with-alpha)."""
    return np.float32(np.float64(a) * np.float64(b) + np.float64(c))


@numba.njit(inline="always")
def _lerp(start, end, weight):
    """torch.lerp on float32: start + w·(end − start) for |w| < 0.5, else end − (end − start)·(1 − w), as FMAs."""
    d = np.float32(end - start)
    if abs(weight) < np.float32(0.5):
        return _fma(weight, d, start)
    return _fma(-d, np.float32(np.float32(1.0) - weight), end)


@numba.njit(cache=True, parallel=True)
def _window(
    coefs,  # (n_problems, n) float64: c_t for t = t0 .. t0 + n - 1
    problem_of,  # (R,) int64
    fp,  # (R, 8) float64 hyperparameters (F_* columns)
    ip,  # (R, 7) int64 flags (I_* columns)
    x,  # (R,) float32, in/out
    m,  # (R,) float32, in/out: first moment / momentum buffer
    v,  # (R,) float32, in/out: second moment / sum of squares / Adamax's u
    vmax,  # (R,) float32, in/out: AMSGrad's v̂
    aux,  # (R,) float64, in/out: Π β1s (Adam family) or NAdam's μ-product (a float32 value)
    regret,  # (R,) float64, in/out: R_{t-1}
    bc_done,  # (R,) bool, in/out: bias corrections are exactly 1.0 from here on
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
        kind, nesterov, ams, bias = ip[r, I_KIND], ip[r, I_NESTEROV], ip[r, I_AMS], ip[r, I_BIAS]
        lrs, b1s, b2s = ip[r, I_LRS], ip[r, I_B1S], ip[r, I_B2S]
        a, b1, b2, lam, psi = fp[r, F_LR], fp[r, F_B1], fp[r, F_B2], fp[r, F_LAM], fp[r, F_PSI]
        epsf = np.float32(fp[r, F_EPS])
        mom = fp[r, F_MOM]
        momf = np.float32(mom)
        alphaf = np.float32(fp[r, F_ALPHA])
        one_minus_alpha = np.float32(1.0 - fp[r, F_ALPHA])
        lof, hif = np.float32(lo[r]), np.float32(hi[r])
        xs = x_star[r]
        # per-run constants, hoisted out of the time loop (used when the schedules are constant)
        w1 = np.float32(1.0 - b1)
        b2f = np.float32(b2)
        c2f = np.float32(1.0 - b2)
        xr, mr, vr, vmr, ax, reg, done = x[r], m[r], v[r], vmax[r], aux[r], regret[r], bc_done[r]
        k = 0
        for i in range(n):
            t = t0 + i
            tf = np.float64(t)
            c = coefs[row, i]
            reg += c * (np.float64(xr) - xs)  # f_t(x_t) − f_t(x*), x_t the point played
            g = np.float32(c)  # ∇f_t(x_t) = c_t in float32
            if kind == K_SGD:
                if mom != 0.0:
                    # torch: buf = g at the first step, then buf.mul_(μ).add_(g); nesterov: g.add(buf, alpha=μ)
                    mr = g if t == 1 else np.float32(np.float32(mr * momf) + g)
                    d = _fma(momf, mr, g) if nesterov else mr
                else:
                    d = g
                xr = _fma(np.float32(-a), d, xr)  # param.add_(d, alpha=−lr)
            elif kind == K_ADAGRAD:
                vr = _fma(g, g, vr)  # s ← s + g² (addcmul_ value=1)
                xr = xr + np.float32(np.float32(-a) * g) / np.float32(np.float32(np.sqrt(vr)) + epsf)
            elif kind == K_RMSPROP:
                vr = _fma(np.float32(one_minus_alpha * g), g, np.float32(vr * alphaf))
                xr = xr + np.float32(np.float32(-a) * g) / np.float32(np.float32(np.sqrt(vr)) + epsf)
            elif kind == K_ADAMAX:
                mr = _lerp(mr, g, w1)
                vr = max(np.float32(vr * b2f), np.float32(abs(g) + epsf))
                clr = a / (1.0 - b1**tf)
                xr = xr + np.float32(np.float32(-clr) * mr) / vr
            elif kind == K_NADAM:
                bc2 = 1.0 - b2**tf
                mu = b1 * (1.0 - 0.5 * (0.96 ** (tf * psi)))
                mu_next = b1 * (1.0 - 0.5 * (0.96 ** ((tf + 1.0) * psi)))
                ax = np.float64(np.float32(np.float32(ax) * np.float32(mu)))  # float32 state tensor *= μ
                mr = _lerp(mr, g, w1)
                vr = _fma(np.float32(c2f * g), g, np.float32(vr * b2f))
                denom = np.float32(np.float32(np.sqrt(np.float32(vr / np.float32(bc2)))) + epsf)
                mu_product_next = ax * mu_next
                xr = xr + np.float32(np.float32(-a * (1.0 - mu) / (1.0 - ax)) * g) / denom
                xr = xr + np.float32(np.float32((-a * mu_next) / (1.0 - mu_product_next)) * mr) / denom
            else:  # K_ADAM: Adam, the three AMSGrads, AdamNC (amsgrad_repro.algorithms._update)
                lr_t = a if lrs == 0 else a / np.sqrt(tf)
                if b1s == 0:
                    b1t, w = b1, w1
                else:
                    b1t = b1 * lam ** (tf - 1.0) if b1s == 1 else b1 / tf
                    w = np.float32(1.0 - b1t)
                if b2s == 0:
                    b2t, b2tf, c2tf = b2, b2f, c2f
                else:
                    b2t = 1.0 - 1.0 / tf
                    b2tf, c2tf = np.float32(b2t), np.float32(1.0 - b2t)
                mr = _lerp(mr, g, w)  # m_t = β1t·m + (1 − β1t)·g
                vr = _fma(np.float32(c2tf * g), g, np.float32(vr * b2tf))  # v_t = β2t·v + (1 − β2t)·g²
                if bias:
                    if done:
                        step, bc2 = lr_t, 1.0
                    else:
                        if b1s == 0:
                            bc1 = 1.0 - b1**tf
                        else:
                            ax *= b1t
                            bc1 = 1.0 - ax
                        bc2 = 1.0 - b2**tf
                        step = lr_t / bc1
                        done = bc1 == 1.0 and bc2 == 1.0
                    if ams == 3:  # corrected: v̂ = max(v̂, v / b2_t)
                        vmr = max(vmr, np.float32(vr / np.float32(bc2)))
                        denom = np.float32(np.float32(np.sqrt(vmr)) + epsf)
                    else:
                        vv = vr
                        if ams == 2:  # pytorch: v̂ = max(v̂, v) over the raw v
                            vmr = max(vmr, vr)
                            vv = vmr
                        denom = np.float32(np.float32(np.float32(np.sqrt(vv)) / np.float32(bc2**0.5)) + epsf)
                else:
                    step = lr_t
                    vv = vr
                    if ams == 1:  # paper: v̂ = max(v̂, v), no bias correction
                        vmr = max(vmr, vr)
                        vv = vmr
                    denom = np.float32(np.float32(np.sqrt(vv)) + epsf)
                xr = xr + np.float32(np.float32(-step) * mr) / denom
            xr = min(max(xr, lof), hif)  # Π_F
            if t % log_every == 0 or t == last_t:
                snap_x[r, k] = xr
                snap_r[r, k] = reg / t
                k += 1
        x[r], m[r], v[r], vmax[r], aux[r], regret[r], bc_done[r] = xr, mr, vr, vmr, ax, reg, done


def kernel_cached() -> bool:
    """Whether numba's on-disk cache already holds the compiled kernel (if not, the first call compiles it,
    which takes about 15 s). Reads numba's cache index location; if that cannot be found, says True."""
    import glob
    import os

    path = getattr(getattr(_window, "_cache", None), "_cache_path", None)
    if path is None:
        return True
    return bool(glob.glob(os.path.join(path, f"{__name__.rsplit('.', 1)[-1]}._window-*.nbi")))


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

    Ctrl-C or SIGTERM stops at the end of the current window (the compiled loop cannot stop inside one): the last
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
    encoded = [encode(run.choice) for run in runs]
    fp = np.stack([f for f, _ in encoded])
    ip = np.stack([i for _, i in encoded])
    x = np.array([p.x.item() for p in chosen], dtype=np.float32)
    m = np.zeros(n_runs, np.float32)
    v = np.zeros(n_runs, np.float32)
    vmax = np.zeros(n_runs, np.float32)
    aux = np.ones(n_runs, np.float64)
    regret = np.zeros(n_runs, np.float64)
    bc_done = np.zeros(n_runs, np.bool_)
    lo = np.array([p.bounds.lo for p in chosen], np.float64)
    hi = np.array([p.bounds.hi for p in chosen], np.float64)
    x_star = np.array([p.x_star for p in chosen], np.float64)
    coefs = np.empty((len(problems), min(window, steps)), np.float64)

    t0 = 1
    logged_t = 0
    interrupted = False
    with defer_signals() as sigint:
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
            _window(
                coefs, problem_of, fp, ip, x, m, v, vmax, aux, regret, bc_done,
                lo, hi, x_star, t0, n, log_every, steps, snap_x, snap_r,
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
    return FusedResult(
        x=x.copy(), average_regret=average, steps_done=done, interrupted=interrupted, stop_requested=sigint.hit
    )
