"""The fused engine's Adam family across runs: many runs advanced together, one step at a time, as vector lanes.

Usage (what :func:`amsgrad_repro.synthetic.fused.simulate` does with the runs it can give it)::

    lanes = Lanes(lr, lr_sqrt, beta1, beta2, eps, ams, bias, corrected, problem_of, lo, hi, x_star, x0, dtype)
    lanes.advance(coefs, t0, n, log_every, last_t, snap_x, snap_r)     # one window, every lane
    lanes.x, lanes.regret                                               # state after it

The single-run kernel (:func:`amsgrad_repro.synthetic.fused._window`) runs one run through all its steps, with a
branch per optimizer kind, per schedule and per "bias correction finished" inside the time loop: fast for one run,
but the CPU's vector units sit idle. Here the loops are the other way round: for each step t, every run of a block
of :data:`LANES` runs takes its step, and the body has no branch that depends on the run, so the compiler turns the
loop over runs into SIMD instructions (8 float64 or 16 float32 lanes with AVX-512), and blocks go to the cores.

What makes that possible, and what it costs:

- only the Adam family with constant β's comes here: Adam, the three AMSGrads (``paper``, ``pytorch``,
  ``corrected``), with a constant or 1/√t step size. Every per-run difference is data, not control flow: which
  AMSGrad max, which bias correction, which branch of torch's lerp — both sides are computed and one is selected;
- the bias corrections 1 − β^t and their square roots are the same for every run with the same β, so they are
  tabulated once per distinct β per block of :data:`TABLE_STEPS` steps (a pow each), not once per run per step;
  a run without bias correction reads the row of β = 0, which is exactly 1.0. A β's row is computed until
  1 − β^t is exactly 1.0 and is 1.0 from then on: the single-run kernel makes the same assumption (its "done"
  flag), so the two agree bit for bit (tests/test_fused.py checks it in both dtypes);
- every rounding is the single-run kernel's (:mod:`.arith`), in the same order, and the kernels are compiled
  without fast-math, so no reassociation or contraction changes a bit: x, the moments and R_t/t of every run are
  bit-identical to the single-run kernel's, hence to the Trial as tested there.
"""

from __future__ import annotations

import numba
import numpy as np

from .arith import _as, _fma, _lerp_select

#: at most this many runs per block (one block is one core's inner loop over runs, a step at a time)
LANES = 256
#: steps per table of bias corrections (memory: distinct β's × this × 16 bytes)
TABLE_STEPS = 2048


@numba.njit(cache=True)
def _fill(betas, bc, sq, t_one, ones, t_start, cn):
    """Rows of 1 − β^t (``bc``) and (1 − β^t)^0.5 (``sq``) for t = t_start … t_start + cn − 1, each distinct β.
    ``t_one[q]`` is the first t where row q is exactly 1.0 (0: not yet); ``ones[q]``: the whole row is 1.0 and
    stays so (nothing to compute)."""
    for q in range(betas.shape[0]):
        if ones[q]:
            continue
        all_one = True
        for j in range(cn):
            t = t_start + j
            if t_one[q] > 0 and t >= t_one[q]:
                value = 1.0
            else:
                value = 1.0 - betas[q] ** np.float64(t)  # as the single-run kernel: bc = 1.0 - b**tf
                if value == 1.0:
                    t_one[q] = t
            bc[q, j] = value
            sq[q, j] = value**0.5  # as the single-run kernel: bc2**0.5
            all_one = all_one and value == 1.0
        ones[q] = all_one and cn == bc.shape[1]


@numba.njit(cache=True, error_model="numpy")
def _lanes_general(r0, r1, c, s1, sdiv, ssq, sqt, lr, lr_sqrt, w, b2f, c2f, epsf, ams, lo, hi, x_star, x, m, v, vmax,
                   regret):  # fmt: skip
    """One step of runs r0 … r1 − 1, any of them still bias-correcting or on α/√t. ``c`` the slope each run sees;
    ``s1``, ``sdiv``, ``ssq`` its 1 − β1^t, the divisor of v before AMSGrad-corrected's max, and the root dividing
    √v (each exactly 1.0 where it does not apply, so dividing by it changes nothing)."""
    for r in range(r0, r1):  # the SIMD loop: no branch depends on r
        xr = x[r]
        cr = c[r]
        regret[r] += cr * (np.float64(xr) - x_star[r])  # f_t(x_t) − f_t(x*), x_t the point played
        g = _as(cr, xr)
        mr = _lerp_select(m[r], g, w[r])  # m_t = β1·m + (1 − β1)·g, as torch.lerp
        vr = _fma(_as(c2f[r] * g, xr), g, _as(v[r] * b2f[r], xr))  # v_t = β2·v + (1 − β2)·g²
        lr_t = lr[r] / (sqt if lr_sqrt[r] else 1.0)
        step = lr_t / s1[r]  # α_t / (1 − β1^t)
        cand = _as(vr / _as(sdiv[r], xr), xr)  # v / (1 − β2^t) (AMSGrad corrected)
        vm = vmax[r]
        vm = max(vm, cand) if ams[r] else vm
        vv = vm if ams[r] else vr
        denom = _as(_as(_as(np.sqrt(vv), xr) / _as(ssq[r], xr), xr) + epsf[r], xr)
        xr = xr + _as(_as(-step, xr) * mr, xr) / denom
        x[r] = min(max(xr, lo[r]), hi[r])  # Π_F
        m[r] = mr
        v[r] = vr
        vmax[r] = vm


@numba.njit(cache=True, error_model="numpy")
def _lanes_steady(r0, r1, c, lr, w, b2f, c2f, epsf, ams, lo, hi, x_star, x, m, v, vmax, regret):
    """:func:`_lanes_general` once every bias correction of runs r0 … r1 − 1 is exactly 1.0 and α is constant:
    the same arithmetic without its divisions by 1.0 (which change no bit), so two divisions a step fewer."""
    for r in range(r0, r1):
        xr = x[r]
        cr = c[r]
        regret[r] += cr * (np.float64(xr) - x_star[r])
        g = _as(cr, xr)
        mr = _lerp_select(m[r], g, w[r])
        vr = _fma(_as(c2f[r] * g, xr), g, _as(v[r] * b2f[r], xr))
        vm = vmax[r]
        vm = max(vm, vr) if ams[r] else vm
        vv = vm if ams[r] else vr
        denom = _as(_as(np.sqrt(vv), xr) + epsf[r], xr)
        xr = xr + _as(_as(-lr[r], xr) * mr, xr) / denom
        x[r] = min(max(xr, lo[r]), hi[r])
        m[r] = mr
        v[r] = vr
        vmax[r] = vm


@numba.njit(cache=True, parallel=True, error_model="numpy")
def _advance(
    coefs,  # (n_problems, n) float64: c_t for t = t0 .. t0 + n - 1
    problem_of,  # (R,) int64, runs sorted by it
    lr,  # (R,) float64: α
    lr_sqrt,  # (R,) bool: α_t = α/√t (else α)
    w,  # (R,) state dtype: 1 − β1, rounded (the lerp weight)
    b2f,  # (R,) state dtype: β2
    c2f,  # (R,) state dtype: 1 − β2
    epsf,  # (R,) state dtype: ε
    ams,  # (R,) bool: keep v̂ = max(v̂, ·)
    k1,  # (R,) int64: table row of β1 for 1 − β1^t (row 0, β = 0: no correction)
    kdiv,  # (R,) int64: row dividing v before the max (AMSGrad corrected), else 0
    ksq,  # (R,) int64: row whose square root divides √v (Adam, AMSGrad pytorch), else 0
    lo,  # (R,) state dtype
    hi,  # (R,) state dtype
    x_star,  # (R,) float64
    x,  # (R,) state dtype, in/out
    m,  # (R,) state dtype, in/out
    v,  # (R,) state dtype, in/out
    vmax,  # (R,) state dtype, in/out
    regret,  # (R,) float64, in/out: R_{t-1}
    c,  # (R,) float64, scratch: the slope each run sees now
    s1,  # (R,) float64, scratch
    sdiv,  # (R,) float64, scratch
    ssq,  # (R,) float64, scratch
    betas,  # (B,) float64: the distinct β's, betas[0] == 0.0
    bc,  # (B, TABLE_STEPS) float64, scratch
    sq,  # (B, TABLE_STEPS) float64, scratch
    t_one,  # (B,) int64, in/out
    ones,  # (B,) bool, in/out
    lanes,  # runs per block
    t0,
    n,
    log_every,
    last_t,
    snap_x,  # (R, k) state dtype, out
    snap_r,  # (R, k) float64, out
):
    n_runs = x.shape[0]
    blocks = (n_runs + lanes - 1) // lanes
    table = bc.shape[1]
    k_base = 0
    for c0 in range(0, n, table):
        cn = min(table, n - c0)
        _fill(betas, bc, sq, t_one, ones, t0 + c0, cn)
        for b in numba.prange(blocks):
            # unsigned bounds: the compiler then knows no index is negative (no wrap-around select per access),
            # which is what lets it vectorize the loops over r
            r0, r1 = np.uint64(b * lanes), np.uint64(min(n_runs, (b + 1) * lanes))
            one_problem = problem_of[r0] == problem_of[r1 - np.uint64(1)]  # sorted: the whole block plays one stream
            steady = True  # every table row this block reads is 1.0 for the whole chunk, and α is constant
            for r in range(r0, r1):
                steady = steady and ones[k1[r]] and ones[kdiv[r]] and ones[ksq[r]] and not lr_sqrt[r]
            k = k_base
            for i in range(c0, c0 + cn):
                t = t0 + i
                if one_problem:
                    c[r0:r1] = coefs[problem_of[r0], i]
                else:
                    for r in range(r0, r1):
                        c[r] = coefs[problem_of[r], i]
                if steady:
                    _lanes_steady(r0, r1, c, lr, w, b2f, c2f, epsf, ams, lo, hi, x_star, x, m, v, vmax, regret)
                else:
                    j = i - c0
                    for r in range(r0, r1):
                        s1[r], sdiv[r], ssq[r] = bc[k1[r], j], bc[kdiv[r], j], sq[ksq[r], j]
                    _lanes_general(
                        r0, r1, c, s1, sdiv, ssq, np.sqrt(np.float64(t)), lr, lr_sqrt, w, b2f, c2f, epsf, ams,
                        lo, hi, x_star, x, m, v, vmax, regret,
                    )  # fmt: skip
                if t % log_every == 0 or t == last_t:
                    for r in range(r0, r1):
                        snap_x[r, k] = x[r]
                        snap_r[r, k] = regret[r] / t
                    k += 1
        for i in range(c0, c0 + cn):
            t = t0 + i
            if t % log_every == 0 or t == last_t:
                k_base += 1


class Lanes:
    """The state of runs of the Adam family with constant β's, advanced together (:func:`_advance`).

    Args (one value per run, numpy arrays): ``lr`` α; ``lr_sqrt`` α/√t schedule; ``beta1``, ``beta2``, ``eps``;
    ``ams`` AMSGrad's max; ``bias`` bias correction; ``corrected`` AMSGrad corrected (the max over v/(1 − β2^t));
    ``problem_of`` which problem's stream; ``lo``, ``hi`` F; ``x_star``; ``x0`` (float64); and ``dtype`` the state's.
    Inside, runs are ordered by problem, then β2, then β1, so that a block of runs usually plays one stream and
    leaves its bias corrections at the same step; :attr:`x`,
    :attr:`regret` and the snapshots are in the caller's order.
    """

    def __init__(self, lr, lr_sqrt, beta1, beta2, eps, ams, bias, corrected, problem_of, lo, hi, x_star, x0, dtype):
        dt = np.dtype(dtype)
        # by problem, then β2, then β1: a block then usually plays one stream, and its runs finish their bias
        # corrections together (a block takes the faster steady loop only once all of its runs have)
        problems, beta1_in, beta2_in = (np.asarray(a) for a in (problem_of, beta1, beta2))
        self.order = order = np.lexsort((beta1_in, beta2_in, problems))
        n = len(order)

        def f64(a):
            return np.asarray(a, np.float64)[order]

        b1, b2 = f64(beta1), f64(beta2)
        self.lr, self.lr_sqrt = f64(lr), np.asarray(lr_sqrt, np.bool_)[order]
        # the single-run kernel's per-run constants, rounded the same way: _as(1 - b1), _as(b2), _as(1 - b2), _as(ε)
        self.w, self.b2f, self.c2f, self.epsf = (
            (1.0 - b1).astype(dt),
            b2.astype(dt),
            (1.0 - b2).astype(dt),
            f64(eps).astype(dt),
        )
        self.ams = np.asarray(ams, np.bool_)[order]
        bias, corrected = np.asarray(bias, np.bool_)[order], np.asarray(corrected, np.bool_)[order]
        self.betas = np.unique(np.concatenate([[0.0], b1, b2]))
        b1_rows, b2_rows = np.searchsorted(self.betas, b1), np.searchsorted(self.betas, b2)
        zero = np.zeros(n, np.int64)  # row of β = 0: 1 − 0^t = 1.0 exactly
        self.k1 = np.where(bias, b1_rows, zero)
        self.kdiv = np.where(bias & corrected, b2_rows, zero)
        self.ksq = np.where(bias & ~corrected, b2_rows, zero)
        self.problem_of = np.asarray(problem_of, np.int64)[order]
        self.lo, self.hi = f64(lo).astype(dt), f64(hi).astype(dt)  # the single-run kernel's _as(lo), _as(hi)
        self.x_star = f64(x_star)
        self._x = f64(x0).astype(dt)
        self.m, self.v, self.vmax = np.zeros(n, dt), np.zeros(n, dt), np.zeros(n, dt)
        self._regret = np.zeros(n, np.float64)
        self.scratch = [np.empty(n) for _ in range(4)]
        b = len(self.betas)
        self.bc, self.sq = np.empty((b, TABLE_STEPS)), np.empty((b, TABLE_STEPS))
        self.t_one, self.ones = np.zeros(b, np.int64), np.zeros(b, np.bool_)
        # runs per block: the runs shared evenly over numba's threads, whole vectors of 8, at most LANES
        threads = numba.get_num_threads()
        per_thread = -(-n // threads)
        self.lanes = int(min(LANES, max(8, -(-per_thread // 8) * 8)))

    @property
    def x(self) -> np.ndarray:
        """x of every run, in the caller's order."""
        out = np.empty_like(self._x)
        out[self.order] = self._x
        return out

    @property
    def regret(self) -> np.ndarray:
        """R_t of every run (float64), in the caller's order."""
        out = np.empty_like(self._regret)
        out[self.order] = self._regret
        return out

    def advance(self, coefs, t0: int, n: int, log_every: int, last_t: int, snap_x, snap_r) -> None:
        """Steps t0 … t0 + n − 1 of every run; snapshots at the log points into ``snap_x``/``snap_r`` (R, k)."""
        sx, sr = np.empty_like(snap_x), np.empty_like(snap_r)
        _advance(
            coefs, self.problem_of, self.lr, self.lr_sqrt, self.w, self.b2f, self.c2f, self.epsf, self.ams,
            self.k1, self.kdiv, self.ksq, self.lo, self.hi, self.x_star, self._x, self.m, self.v, self.vmax,
            self._regret, *self.scratch, self.betas, self.bc, self.sq, self.t_one, self.ones, self.lanes,
            t0, n, log_every, last_t, sx, sr,
        )  # fmt: skip
        snap_x[self.order], snap_r[self.order] = sx, sr
