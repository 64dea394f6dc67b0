"""The fused engine: the same problems, optimizers and projection as the Trial, in a compiled loop over t.

Usage::

    from amsgrad_repro.synthetic.fused import FusedRun, simulate
    from amsgrad_repro.synthetic.problems import Online   # or any LinearFunctions: no torch needed

    runs = [FusedRun.of("adam"), FusedRun.of("amsgrad"), FusedRun.of("sgd,lr=0.01")]
    result = simulate([Online()], runs, steps=10_000_000)
    result.x, result.average_regret        # one value per run

Many runs go through one call (optimizers × hyperparameters × problems/seeds), split over the cores with
numba's ``prange``. When there are many runs of the Adam family with constant β's (a phase grid, a big sweep),
they go to :mod:`.lanes`, which advances them together as SIMD lanes, bit-identical to the loop here.
Time advances in windows of at most ``window`` steps: each window's slopes c_t are read
from the problems' streams, the kernel advances every run through the window, and ``on_log`` receives the
snapshots taken at t = log_every, 2·log_every, … and at t = T. Memory is O(window · problems), never O(T).

Every optimizer of the zoo (:data:`amsgrad_repro.optimizers.ZOO`) is here, and each one copies its Trial
twin's arithmetic step by step, in float32 (the default) or float64 (``dtype=``): the torch.optim
single-tensor CPU path, or :mod:`amsgrad_repro.algorithms`, which uses the same tensor ops:

- t is a 1-based step count; scalars torch computes in Python (bias corrections 1 − β^t, step sizes,
  schedules, NAdam's μ_t) are computed in float64 the same way, and rounded to the state's dtype where torch's
  kernels round them (:func:`_as`; in float64 that rounding is the identity). The kernel is compiled once per
  dtype;
- torch's CPU kernels for ``lerp_``, ``addcmul_`` and ``add_(…, alpha=…)`` are fused multiply-adds, in both
  dtypes. We call LLVM's ``llvm.fma.f32`` / ``llvm.fma.f64`` (correctly rounded, with or without an FMA
  unit: :mod:`.arith`).
  ``addcdiv_`` is (value·t1)/t2 + x, unfused;
- ``sqrt`` is the correctly rounded square root. torch's CPU sqrt (MKL on AVX-512 builds) is not: it differs
  by ±1 ulp on some 15% of float32 inputs and 0.5% of float64 inputs, so the engines agree to a few ulps rather
  than bit for bit (tests/test_algorithms.py measures it in both dtypes);
- NAdam's μ-product lives in a float32 tensor in torch whatever the parameter's dtype, and here too;
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

from ..optimizers import Choice, resolve
from ..signals import defer_signals
from . import lanes
from .arith import _as, _fma, _lerp
from .functions import DTYPES, LinearFunctions
from .windows import auto_window, lanes_take, log_points, thread_count

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
    """State after :func:`simulate`: x (iterate after the last update, in the run's dtype), R_t / t, steps done."""

    x: np.ndarray
    average_regret: np.ndarray
    steps_done: int
    interrupted: bool = False
    #: Ctrl-C or SIGTERM arrived, possibly during the last window (then the run finished; the caller should stop)
    stop_requested: bool = False
    #: with ``gamma=True``: Γ of the last step done (NaN if it was step 1), and the fraction of steps 2..T with
    #: Γ < 0 (:mod:`amsgrad_repro.gamma`); None otherwise
    gamma: np.ndarray | None = None
    gamma_negative_steps: np.ndarray | None = None


@numba.njit(cache=True, parallel=True, error_model="numpy")
def _window(
    coefs,  # (n_problems, n) float64: c_t for t = t0 .. t0 + n - 1
    problem_of,  # (R,) int64
    fp,  # (R, 8) float64 hyperparameters (F_* columns)
    ip,  # (R, 7) int64 flags (I_* columns)
    x,  # (R,) float32 or float64 (the run's dtype), in/out
    m,  # (R,) same dtype, in/out: first moment / momentum buffer
    v,  # (R,) same dtype, in/out: second moment / sum of squares / Adamax's u
    vmax,  # (R,) same dtype, in/out: AMSGrad's v̂
    aux,  # (R,) float64, in/out: Π β1s (Adam family) or NAdam's μ-product (a float32 value)
    regret,  # (R,) float64, in/out: R_{t-1}
    bc_done,  # (R,) bool, in/out: bias corrections are exactly 1.0 from here on
    track,  # bool: compute Γ_t (amsgrad_repro.gamma) into the next three and the Γ snapshots
    dprev,  # (R,) float64, in/out: √V_{t-1}/α_{t-1}
    negs,  # (R,) int64, in/out: steps s ≤ t-1 with Γ_s < 0
    gam,  # (R,) float64, in/out: Γ_{t-1} (NaN before step 2)
    lo,
    hi,
    x_star,  # (R,) float64
    t0,
    n,
    log_every,
    last_t,
    snap_x,  # (R, k) the run's dtype, out
    snap_r,  # (R, k) float64, out
    snap_g,  # (R, k) float64, out: Γ_t (if track)
    snap_n,  # (R, k) float64, out: the fraction of steps 2..t with Γ < 0 (if track)
):
    n_runs = x.shape[0]
    for r in numba.prange(n_runs):
        row = problem_of[r]
        kind, nesterov, ams, bias = ip[r, I_KIND], ip[r, I_NESTEROV], ip[r, I_AMS], ip[r, I_BIAS]
        lrs, b1s, b2s = ip[r, I_LRS], ip[r, I_B1S], ip[r, I_B2S]
        a, b1, b2, lam, psi = fp[r, F_LR], fp[r, F_B1], fp[r, F_B2], fp[r, F_LAM], fp[r, F_PSI]
        xr, mr, vr, vmr, ax, reg, done = x[r], m[r], v[r], vmax[r], aux[r], regret[r], bc_done[r]
        dp, ng, gm = dprev[r], negs[r], gam[r]
        eps64 = fp[r, F_EPS]
        dd = 0.0  # √V_t/α_t (amsgrad_repro.gamma: the same float64 expression, in the same order)
        epsf = _as(fp[r, F_EPS], xr)
        mom = fp[r, F_MOM]
        momf = _as(mom, xr)
        alphaf = _as(fp[r, F_ALPHA], xr)
        one_minus_alpha = _as(1.0 - fp[r, F_ALPHA], xr)
        lof, hif = _as(lo[r], xr), _as(hi[r], xr)
        xs = x_star[r]
        # per-run constants, hoisted out of the time loop (used when the schedules are constant)
        w1 = _as(1.0 - b1, xr)
        b2f = _as(b2, xr)
        c2f = _as(1.0 - b2, xr)
        k = 0
        for i in range(n):
            t = t0 + i
            tf = np.float64(t)
            c = coefs[row, i]
            reg += c * (np.float64(xr) - xs)  # f_t(x_t) − f_t(x*), x_t the point played
            g = _as(c, xr)  # ∇f_t(x_t) = c_t in the run's dtype
            if kind == K_SGD:
                if mom != 0.0:
                    # torch: buf = g at the first step, then buf.mul_(μ).add_(g); nesterov: g.add(buf, alpha=μ)
                    mr = g if t == 1 else _as(_as(mr * momf, xr) + g, xr)
                    d = _fma(momf, mr, g) if nesterov else mr
                else:
                    d = g
                xr = _fma(_as(-a, xr), d, xr)  # param.add_(d, alpha=−lr)
                if track:
                    dd = 1.0 / a  # √V_t = 1
            elif kind == K_ADAGRAD:
                vr = _fma(g, g, vr)  # s ← s + g² (addcmul_ value=1)
                xr = xr + _as(_as(-a, xr) * g, xr) / _as(_as(np.sqrt(vr), xr) + epsf, xr)
                if track:
                    dd = (np.sqrt(np.float64(vr)) + eps64) / a
            elif kind == K_RMSPROP:
                vr = _fma(_as(one_minus_alpha * g, xr), g, _as(vr * alphaf, xr))
                xr = xr + _as(_as(-a, xr) * g, xr) / _as(_as(np.sqrt(vr), xr) + epsf, xr)
                if track:
                    dd = (np.sqrt(np.float64(vr)) + eps64) / a
            elif kind == K_ADAMAX:
                mr = _lerp(mr, g, w1)
                vr = max(_as(vr * b2f, xr), _as(abs(g) + epsf, xr))
                clr = a / (1.0 - b1**tf)
                xr = xr + _as(_as(-clr, xr) * mr, xr) / vr
                if track:
                    dd = np.float64(vr) / a  # u_t is √V_t (ε inside)
            elif kind == K_NADAM:
                bc2 = 1.0 - b2**tf
                mu = b1 * (1.0 - 0.5 * (0.96 ** (tf * psi)))
                mu_next = b1 * (1.0 - 0.5 * (0.96 ** ((tf + 1.0) * psi)))
                # torch keeps μ-product in a float32 tensor whatever the parameter's dtype
                ax = np.float64(np.float32(np.float32(ax) * np.float32(mu)))
                mr = _lerp(mr, g, w1)
                vr = _fma(_as(c2f * g, xr), g, _as(vr * b2f, xr))
                denom = _as(_as(np.sqrt(_as(vr / _as(bc2, xr), xr)), xr) + epsf, xr)
                mu_product_next = ax * mu_next
                xr = xr + _as(_as(-a * (1.0 - mu) / (1.0 - ax), xr) * g, xr) / denom
                xr = xr + _as(_as((-a * mu_next) / (1.0 - mu_product_next), xr) * mr, xr) / denom
                if track:
                    dd = (np.sqrt(np.float64(vr) / bc2) + eps64) / a
            else:  # K_ADAM: Adam, the three AMSGrads, AdamNC (amsgrad_repro.algorithms._update)
                lr_t = a if lrs == 0 else a / np.sqrt(tf)
                if b1s == 0:
                    b1t, w = b1, w1
                else:
                    b1t = b1 * lam ** (tf - 1.0) if b1s == 1 else b1 / tf
                    w = _as(1.0 - b1t, xr)
                if b2s == 0:
                    b2t, b2tf, c2tf = b2, b2f, c2f
                else:
                    b2t = 1.0 - 1.0 / tf
                    b2tf, c2tf = _as(b2t, xr), _as(1.0 - b2t, xr)
                mr = _lerp(mr, g, w)  # m_t = β1t·m + (1 − β1t)·g
                vr = _fma(_as(c2tf * g, xr), g, _as(vr * b2tf, xr))  # v_t = β2t·v + (1 − β2t)·g²
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
                        vmr = max(vmr, _as(vr / _as(bc2, xr), xr))
                        denom = _as(_as(np.sqrt(vmr), xr) + epsf, xr)
                        if track:
                            dd = (np.sqrt(np.float64(vmr)) + eps64) / lr_t
                    else:
                        vv = vr
                        if ams == 2:  # pytorch: v̂ = max(v̂, v) over the raw v
                            vmr = max(vmr, vr)
                            vv = vmr
                        denom = _as(_as(_as(np.sqrt(vv), xr) / _as(bc2**0.5, xr), xr) + epsf, xr)
                        if track:
                            dd = (np.sqrt(np.float64(vv) / bc2) + eps64) / lr_t
                else:
                    step = lr_t
                    vv = vr
                    if ams == 1:  # paper: v̂ = max(v̂, v), no bias correction
                        vmr = max(vmr, vr)
                        vv = vmr
                    denom = _as(_as(np.sqrt(vv), xr) + epsf, xr)
                    if track:
                        dd = (np.sqrt(np.float64(vv)) + eps64) / lr_t
                if denom == 0.0:  # v̂ = 0 with ε = 0: the coordinate does not move (0/∞), not 0/0 = NaN
                    denom = _as(np.inf, xr)  # as amsgrad_repro.algorithms._update
                xr = xr + _as(_as(-step, xr) * mr, xr) / denom
            xr = min(max(xr, lof), hif)  # Π_F
            if track:
                if t >= 2:
                    gm = dd - dp  # Γ_t = √V_t/α_t − √V_{t−1}/α_{t−1}
                    if gm < 0.0:
                        ng += 1
                dp = dd
            if t % log_every == 0 or t == last_t:
                snap_x[r, k] = xr
                snap_r[r, k] = reg / t
                if track:
                    snap_g[r, k] = gm
                    snap_n[r, k] = ng / (t - 1.0) if t >= 2 else np.nan
                k += 1
        x[r], m[r], v[r], vmax[r], aux[r], regret[r], bc_done[r] = xr, mr, vr, vmr, ax, reg, done
        dprev[r], negs[r], gam[r] = dp, ng, gm


def kernel_cached(dtype: str = "float32", lanes_too: bool = False) -> bool:
    """Whether numba's on-disk cache already holds the kernel compiled for ``dtype`` state (if not, the first
    call compiles it, which took 6 s of an 8 s first run here); with ``lanes_too``, the lane kernel's as well (a
    phase grid uses it). Reads numba's cache index (numba internals: if they cannot be read, says True rather
    than print a wrong message)."""
    try:
        kernels = [(_window, 4)] + ([(lanes._advance, 17)] if lanes_too else [])  # the argument that is x
        for kernel, x_arg in kernels:
            index = kernel._cache._cache_file._load_index()
            if not any(str(key[0][x_arg].dtype) == dtype for key in index):
                return False
        return True
    except Exception:
        return True


def simulate(
    problems: Sequence[LinearFunctions],
    runs: Sequence[FusedRun],
    steps: int,
    log_every: int = 1000,
    on_log: Callable[[np.ndarray, np.ndarray, np.ndarray], None] | None = None,
    on_window: Callable[[int], None] | None = None,
    window: int | None = None,
    dtype: str = "float32",
    simd: bool | None = None,
    gamma: bool = False,
    on_gamma: Callable[[np.ndarray, np.ndarray, np.ndarray], None] | None = None,
    threads: int | None = None,
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
        window: steps per kernel call (memory is O(window · len(problems))); None: :func:`~.windows.auto_window`.
        dtype: "float32" (torch's default, and the paper-era frameworks') or "float64": the dtype of x and of
            every optimizer state, as in a Trial whose problem was built with the same ``dtype``.
        simd: None (the default) gives the Adam-family runs with constant β's to the lane kernel (:mod:`.lanes`)
            when there are at least :data:`~.windows.LANES_PER_THREAD` of them per thread; True gives them to it however
            few; False runs every run through the single-run kernel. The numbers are bit-identical either way
            (tests/test_fused.py); only the speed differs.
        gamma: also compute Γ_t = √V_t/α_t − √V_{t−1}/α_{t−1} (:mod:`amsgrad_repro.gamma`, the same float64
            expression) and count the steps where it is negative; off, the kernels skip it (a branch per step).
        on_gamma: with ``gamma``, called after ``on_log`` as ``on_gamma(ts, gamma, negative_fraction)`` (R, k):
            Γ_t at the snapshot steps (NaN at t = 1, where it is not defined) and the fraction of steps 2..t
            with Γ < 0.
        threads: kernel threads; None: :func:`~.windows.thread_count`'s choice (the CPUs this process may use, at
            most one per run, or per block of lanes). The numbers do not depend on it.

    Ctrl-C or SIGTERM stops at the end of the current window (the compiled loop cannot stop inside one): the last
    completed step is reported through ``on_log`` if it was not a log point, and the result says
    ``interrupted=True``.
    """
    if steps < 1 or log_every < 1 or (window is not None and window < 1) or (threads is not None and threads < 1):
        raise ValueError("steps, log_every, window and threads must be >= 1")
    if not runs:
        raise ValueError("no runs")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    state_dtype = np.dtype(dtype)
    for run in runs:
        if not 0 <= run.problem < len(problems):
            raise ValueError(f"run {run} names problem {run.problem}, but there are {len(problems)}")
    n_runs = len(runs)
    chosen = [problems[run.problem] for run in runs]
    problem_of = np.array([run.problem for run in runs], dtype=np.int64)
    encoded = [encode(run.choice) for run in runs]
    fp = np.stack([f for f, _ in encoded])
    ip = np.stack([i for _, i in encoded])
    if window is None:
        window = auto_window(n_runs, len(problems), log_every)
    # threads: as many as the CPUs allow, not more than the runs (numba's setting is per thread: restored after)
    before = numba.get_num_threads()
    numba.set_num_threads(thread_count(n_runs, threads))
    try:
        return _simulate(problems, runs, steps, log_every, on_log, on_window, window, state_dtype, simd, gamma,
                         on_gamma, fp, ip, chosen, problem_of, n_runs, dtype)  # fmt: skip
    finally:
        numba.set_num_threads(before)


def _simulate(problems, runs, steps, log_every, on_log, on_window, window, state_dtype, simd, gamma, on_gamma, fp,
              ip, chosen, problem_of, n_runs, dtype) -> FusedResult:  # fmt: skip
    """:func:`simulate` once its arguments are checked and its threads set."""
    x0 = np.array([p.x0 for p in chosen], np.float64)
    lo = np.array([p.bounds.lo for p in chosen], np.float64)
    hi = np.array([p.bounds.hi for p in chosen], np.float64)
    x_star = np.array([p.x_star for p in chosen], np.float64)
    # the runs the lane kernel takes (the Adam family with constant β's), if there are enough to fill lanes
    fits = (ip[:, I_KIND] == K_ADAM) & (ip[:, I_B1S] == 0) & (ip[:, I_B2S] == 0)
    enough = lanes_take(int(fits.sum()))
    lane = np.flatnonzero(fits) if simd or (simd is None and enough) else np.empty(0, np.int64)
    rest = np.setdiff1d(np.arange(n_runs), lane)
    group = None
    if len(lane):
        fl, il = fp[lane], ip[lane]
        group = lanes.Lanes(
            lr=fl[:, F_LR], lr_sqrt=il[:, I_LRS] == 1, beta1=fl[:, F_B1], beta2=fl[:, F_B2], eps=fl[:, F_EPS],
            ams=il[:, I_AMS] != 0, bias=il[:, I_BIAS] != 0, corrected=il[:, I_AMS] == _AMS["corrected"],
            problem_of=problem_of[lane], lo=lo[lane], hi=hi[lane], x_star=x_star[lane], x0=x0[lane], dtype=dtype,
        )  # fmt: skip
    # the single-run kernel's state, for the other runs
    fp, ip, problem_of, lo, hi, x_star = fp[rest], ip[rest], problem_of[rest], lo[rest], hi[rest], x_star[rest]
    x = x0[rest].astype(state_dtype)  # x_1, rounded to the run's dtype as torch does
    m = np.zeros(len(rest), state_dtype)
    v = np.zeros(len(rest), state_dtype)
    vmax = np.zeros(len(rest), state_dtype)
    aux = np.ones(len(rest), np.float64)
    regret = np.zeros(len(rest), np.float64)
    bc_done = np.zeros(len(rest), np.bool_)
    dprev, gam = np.zeros(len(rest), np.float64), np.full(len(rest), np.nan)
    negs = np.zeros(len(rest), np.int64)
    coefs = np.empty((len(problems), min(window, steps)), np.float64)

    def state() -> tuple[np.ndarray, np.ndarray]:
        """(x, R_{t-1}) of every run, in the runs' order."""
        xs, rs = np.empty(n_runs, state_dtype), np.empty(n_runs, np.float64)
        xs[rest], rs[rest] = x, regret
        if group is not None:
            xs[lane], rs[lane] = group.x, group.regret
        return xs, rs

    def gamma_state() -> tuple[np.ndarray, np.ndarray]:
        """(Γ of the last step, steps with Γ < 0) of every run, in the runs' order."""
        gs, ns = np.empty(n_runs, np.float64), np.empty(n_runs, np.int64)
        gs[rest], ns[rest] = gam, negs
        if group is not None:
            gs[lane], ns[lane] = group.gamma
        return gs, ns

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
            snap_x = np.empty((n_runs, len(ts)), state_dtype)
            snap_r = np.empty((n_runs, len(ts)), np.float64)
            snap_g = np.empty((n_runs, len(ts)) if gamma else (0, 0), np.float64)
            snap_n = np.empty_like(snap_g)
            if len(rest):
                k = len(ts) if gamma else 0
                sx, sr = np.empty((len(rest), len(ts)), state_dtype), np.empty((len(rest), len(ts)))
                sg, sn = np.empty((len(rest), k)), np.empty((len(rest), k))
                _window(
                    coefs, problem_of, fp, ip, x, m, v, vmax, aux, regret, bc_done, gamma, dprev, negs, gam,
                    lo, hi, x_star, t0, n, log_every, steps, sx, sr, sg, sn,
                )  # fmt: skip
                snap_x[rest], snap_r[rest] = sx, sr
                if gamma:
                    snap_g[rest], snap_n[rest] = sg, sn
            if group is not None:
                sx, sr = np.empty((len(lane), len(ts)), state_dtype), np.empty((len(lane), len(ts)))
                sg, sn = (np.empty((len(lane), len(ts))), np.empty((len(lane), len(ts)))) if gamma else (None, None)
                group.advance(coefs, t0, n, log_every, steps, sx, sr, sg, sn)
                snap_x[lane], snap_r[lane] = sx, sr
                if gamma:
                    snap_g[lane], snap_n[lane] = sg, sn
            if on_log is not None and len(ts):
                on_log(ts, snap_x, snap_r)
                logged_t = int(ts[-1])
            if gamma and on_gamma is not None and len(ts):
                on_gamma(ts, snap_g, snap_n)
            if on_window is not None:
                on_window(n)
            t0 += n
    done = t0 - 1
    x, regret = state()
    gs, ns = gamma_state()
    negative = ns / (done - 1.0) if done >= 2 else np.full(n_runs, np.nan)
    if interrupted and on_log is not None and done > logged_t:
        # report the last completed step, so what is logged ends where the run stopped
        on_log(np.array([done]), x[:, None].copy(), (regret / done)[:, None])
        if gamma and on_gamma is not None:
            on_gamma(np.array([done]), gs[:, None].copy(), negative[:, None].copy())
    average = regret / done if done else np.full(n_runs, np.nan)
    return FusedResult(
        x=x.copy(), average_regret=average, steps_done=done, interrupted=interrupted, stop_requested=sigint.hit,
        gamma=gs if gamma else None, gamma_negative_steps=negative if gamma else None,
    )  # fmt: skip
