"""The fused engine's Adam family across runs: many runs advanced together, one step at a time, as vector lanes.

Usage (what :func:`amsgrad_repro.synthetic.fused.simulate` does with the runs it can give it)::

    lanes = Lanes(lr, lr_sqrt, beta1, beta2, eps, ams, bias, corrected, problem_of, lo, hi, x_star, x0, dtype)
    lanes.advance(coefs, t0, n, log_every, last_t, snap_x, snap_r)     # one window, every lane
    lanes.x, lanes.regret                                               # state after it

The single-run kernel (:func:`amsgrad_repro.synthetic.fused._window`) runs one run through all its steps, with a
branch per optimizer kind, per schedule and per "bias correction finished" inside the time loop: fast for one run,
but the CPU's vector units sit idle. Here the loops are the other way round: for each step t, every run of a block
of up to :data:`LANES` runs takes its step, and the body has no branch that depends on the run, so the compiler
turns the loop over runs into SIMD instructions (8 float32 lanes per AVX2 vector), and blocks go to the cores.

What makes that possible, and what it costs:

- only the Adam family with constant β's comes here: Adam, the three AMSGrads (``paper``, ``pytorch``,
  ``corrected``), with a constant or 1/√t step size. Every per-run difference is data, not control flow: which
  AMSGrad max, which bias correction, which of torch.lerp's two formulas (both are one FMA with a per-run weight
  and base) — both sides of a choice are computed and one is selected;
- the bias corrections 1 − β^t and their square roots are the same for every run with the same β, so they are
  tabulated once per distinct β of a block per :data:`TABLE_STEPS` steps (a pow each), not once per run per step;
  a run without bias correction reads the row of β = 0, which is exactly 1.0. Each block keeps its own table of
  the β's its runs use, so a block goes through a whole window without waiting for another core's. A β's row is
  computed until 1 − β^t is exactly 1.0 and is 1.0 from then on: the single-run kernel makes the same assumption
  (its "done" flag), so the two agree bit for bit (tests/test_fused.py checks it in both dtypes);
- every rounding is the single-run kernel's (:mod:`.arith`), in the same order, and the kernels are compiled
  without fast-math, so no reassociation or contraction changes a bit: x, the moments and R_t/t of every run are
  bit-identical to the single-run kernel's, hence to the Trial as tested there.

What made it fast (each measured on the 2-core machine; ``bench`` prints the result):

- the float64 regret sum has its own loop, so the update loop holds no float64 and runs 8 float32 lanes per
  vector instead of 4; for the same reason a float32 FMA is the float32 instruction (:func:`.arith._fma`);
- every loop of a step is written out in :func:`_block`, not called: a call inside the time loop took an atomic
  reference count per array argument per step, which cost more than the arithmetic of 32 runs;
- a block works on private copies of its state, so no cache line written every step is shared by two cores;
- a block's lanes are padded to a multiple of :data:`VECTOR` (copies of its last run, never written back), so
  no run falls into LLVM's scalar remainder loop;
- a block runs a whole window alone, its table of bias corrections its own, so the cores meet once per window,
  not once per :data:`TABLE_STEPS` steps. On a machine whose cores other work also wants, each meeting waits for
  the slowest core's next time slice: a 100 × 100 phase grid beside two busy processes took 19.6-22.4 s of cells
  with a table shared by the blocks (a meeting every 2,048 steps), against 15.1-15.8 s for the same cells split
  over two one-thread processes (issue 27).
"""

from __future__ import annotations

import numba
import numpy as np

from .arith import _as, _fma

#: at most this many runs per block (one block is one core's inner loop over runs, a step at a time)
LANES = 256
#: a block's lanes are a multiple of this: 8 float32 per AVX2 vector, 4 vectors interleaved by LLVM
VECTOR = 32
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


@numba.njit
def _padded(a, r0, r1, n):
    """A private copy of a[r0:r1], n long, the last element repeated to fill it."""
    out = np.empty(n, a.dtype)
    out[: r1 - r0] = a[r0:r1]
    out[r1 - r0 :] = a[r1 - 1]
    return out


@numba.njit(cache=True, error_model="numpy")
def _block(r0, r1, coefs, problem_of, lr, lr_sqrt, weight, near, c2, b2, eps, neg_lr, ams, k1, kdiv, ksq, lo,
           hi, x_star, xs, ms, vs, vmaxs, regrets, bc, sq, ones, t0, c0, cn, k0, log_every, last_t, snap_x,
           snap_r, track, eps64, dprevs, negss, gams, snap_g, snap_n):  # fmt: skip
    """Steps t0 + c0 … t0 + c0 + cn − 1 of runs r0 … r1 − 1 (one block, one core). The block works on private
    copies of its state, so no cache line it writes every step is shared with another core's block. With
    ``track``, Γ_t as the single-run kernel computes it (its own float64 loop after the update)."""
    real = r1 - r0
    # lanes rounded up to whole vector iterations (8 lanes × 4 interleaved here): a shorter loop would run in
    # LLVM's scalar remainder loop. The padding lanes repeat the block's last run and are never written back.
    # Unsigned: no index is negative, so no wrap-around select per access (what lets LLVM vectorize).
    nb = np.uint64(-(-real // VECTOR) * VECTOR)
    x = _padded(xs, r0, r1, nb)
    m = _padded(ms, r0, r1, nb)
    v = _padded(vs, r0, r1, nb)
    vmax = _padded(vmaxs, r0, r1, nb)
    regret = _padded(regrets, r0, r1, nb)
    lr = _padded(lr, r0, r1, nb)
    lr_sqrt = _padded(lr_sqrt, r0, r1, nb)
    weight = _padded(weight, r0, r1, nb)
    near = _padded(near, r0, r1, nb)
    c2 = _padded(c2, r0, r1, nb)
    b2 = _padded(b2, r0, r1, nb)
    eps = _padded(eps, r0, r1, nb)
    neg_lr = _padded(neg_lr, r0, r1, nb)
    ams = _padded(ams, r0, r1, nb)
    k1 = _padded(k1, r0, r1, nb)
    kdiv = _padded(kdiv, r0, r1, nb)
    ksq = _padded(ksq, r0, r1, nb)
    lo = _padded(lo, r0, r1, nb)
    hi = _padded(hi, r0, r1, nb)
    x_star = _padded(x_star, r0, r1, nb)
    problems = _padded(problem_of, r0, r1, nb)
    eps64 = _padded(eps64, r0, r1, nb)
    dprev = _padded(dprevs, r0, r1, nb)
    negs = _padded(negss, r0, r1, nb)
    gam = _padded(gams, r0, r1, nb)
    like = x[0]  # a scalar of the state's dtype, for _as
    g = np.empty(nb, x.dtype)  # c rounded to the state's dtype (torch's gradient)
    neg_step, div, root = np.empty(nb, x.dtype), np.empty(nb, x.dtype), np.empty(nb, x.dtype)
    one_problem = problems[0] == problems[nb - np.uint64(1)]  # sorted by problem: the whole block plays one stream
    steady = True  # every table row this block reads is 1.0 for the whole chunk, and α is constant
    for r in range(nb):
        steady = steady and ones[k1[r]] and ones[kdiv[r]] and ones[ksq[r]] and not lr_sqrt[r]
    k = k0
    t_first = t0 + c0
    next_log = -(-t_first // log_every) * log_every
    for i in range(c0, c0 + cn):
        t = t0 + i
        # the slope each run sees, and R_t += c_t·(x_t − x*) in float64 (its own loop: the float32 update below
        # then runs 8 lanes wide, not 4). Every loop is written out here, not called: a call inside the time loop
        # costs an atomic reference count per array per step, more than the arithmetic of 32 runs
        if one_problem:
            ci = coefs[problems[0], i]
            gi = _as(ci, like)
            for r in range(nb):
                g[r] = gi
                regret[r] += ci * (np.float64(x[r]) - x_star[r])  # f_t(x_t) − f_t(x*), x_t the point played
        else:
            for r in range(nb):
                cr = coefs[problems[r], i]
                g[r] = _as(cr, like)
                regret[r] += cr * (np.float64(x[r]) - x_star[r])
        if steady:
            for r in range(nb):  # the SIMD loop: no branch depends on r
                gr, mo = g[r], m[r]
                # m_t = β1·m + (1 − β1)·g, as torch.lerp: fma(w, d, m) if |w| < 0.5 else fma(−d, 1 − w, g),
                # written as one fma(d, weight, base) (weight w or −(1 − w), base m or g; negation is exact)
                mr = _fma(_as(gr - mo, mo), weight[r], mo if near[r] else gr)
                vr = _fma(_as(c2[r] * gr, mo), gr, _as(v[r] * b2[r], mo))  # v_t = β2·v + (1 − β2)·g², addcmul_
                vm = vmax[r]
                vm = max(vm, vr) if ams[r] else vm  # v̂_t = max(v̂, v_t)
                vv = vm if ams[r] else vr
                denom = _as(_as(np.sqrt(vv), mo) + eps[r], mo)
                denom = denom if denom != 0.0 else _as(np.inf, mo)  # v̂ = 0, ε = 0: no move (algorithms._update)
                xr = x[r] + _as(neg_lr[r] * mr, mo) / denom  # x − α·m/(√v̂ + ε), as addcdiv_
                x[r] = min(max(xr, lo[r]), hi[r])  # Π_F
                m[r], v[r], vmax[r] = mr, vr, vm
        else:
            # the scalars torch computes in Python at step t, rounded where its kernels read them
            j = i - c0
            sqt = np.sqrt(np.float64(t))
            for r in range(nb):
                lr_t = lr[r] / (sqt if lr_sqrt[r] else 1.0)  # α/√t or α
                neg_step[r] = _as(-(lr_t / bc[k1[r], j]), like)  # −α_t / (1 − β1^t)
                div[r] = _as(bc[kdiv[r], j], like)  # 1 − β2^t (AMSGrad corrected divides v by it before the max)
                root[r] = _as(sq[ksq[r], j], like)  # (1 − β2^t)^0.5 (Adam, AMSGrad pytorch divide √v by it)
            for r in range(nb):  # the steady loop plus the divisions by the bias corrections (1.0 where none)
                gr, mo = g[r], m[r]
                mr = _fma(_as(gr - mo, mo), weight[r], mo if near[r] else gr)
                vr = _fma(_as(c2[r] * gr, mo), gr, _as(v[r] * b2[r], mo))
                vm = vmax[r]
                vm = max(vm, _as(vr / div[r], mo)) if ams[r] else vm
                vv = vm if ams[r] else vr
                denom = _as(_as(np.sqrt(vv) / root[r], mo) + eps[r], mo)
                denom = denom if denom != 0.0 else _as(np.inf, mo)
                xr = x[r] + _as(neg_step[r] * mr, mo) / denom
                x[r] = min(max(xr, lo[r]), hi[r])
                m[r], v[r], vmax[r] = mr, vr, vm
        if track:
            # Γ_t = √V_t/α_t − √V_{t−1}/α_{t−1}, the single-run kernel's float64 expression (amsgrad_repro.gamma):
            # √(v̂/b2_t) + ε over α_t, b2_t the row that divides √v (1.0 where none, and once steady)
            j = i - c0
            sqt = np.sqrt(np.float64(t))
            for r in range(nb):
                vv = vmax[r] if ams[r] else v[r]
                b2t = 1.0 if steady else bc[ksq[r], j]
                lr_t = lr[r] if steady else lr[r] / (sqt if lr_sqrt[r] else 1.0)
                dd = (np.sqrt(np.float64(vv) / b2t) + eps64[r]) / lr_t
                if t >= 2:
                    gm = dd - dprev[r]
                    gam[r] = gm
                    negs[r] += gm < 0.0
                dprev[r] = dd
        if t == next_log or t == last_t:
            for r in range(real):
                snap_x[r0 + r, k] = x[r]
                snap_r[r0 + r, k] = regret[r] / t
                if track:
                    snap_g[r0 + r, k] = gam[r]
                    snap_n[r0 + r, k] = negs[r] / (t - 1.0) if t >= 2 else np.nan
            k += 1
        if t == next_log:
            next_log += log_every
    xs[r0:r1], ms[r0:r1], vs[r0:r1] = x[:real], m[:real], v[:real]
    vmaxs[r0:r1], regrets[r0:r1] = vmax[:real], regret[:real]
    dprevs[r0:r1], negss[r0:r1], gams[r0:r1] = dprev[:real], negs[:real], gam[:real]


@numba.njit(cache=True, parallel=True, error_model="numpy")
def _advance(
    coefs,  # (n_problems, n) float64: c_t for t = t0 .. t0 + n - 1
    problem_of,  # (R,) int64, runs sorted by it
    lr,  # (R,) float64: α
    lr_sqrt,  # (R,) bool: α_t = α/√t (else α)
    weight,  # (R,) state dtype: the lerp's weight, 1 − β1 if it is below 0.5, else −(1 − β1) (rounded, then negated)
    near,  # (R,) bool: |1 − β1| < 0.5 (torch.lerp's first formula)
    c2,  # (R,) state dtype: 1 − β2
    b2,  # (R,) state dtype: β2
    eps,  # (R,) state dtype: ε
    neg_lr,  # (R,) state dtype: −α (the steady step)
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
    betas,  # (blocks, B) float64: each block's distinct β's, betas[b, 0] == 0.0 (the rest past rows[b]: unused)
    rows,  # (blocks,) int64: how many β's each block has
    bc,  # (blocks, B, TABLE_STEPS) float64, scratch
    sq,  # (blocks, B, TABLE_STEPS) float64, scratch
    t_one,  # (blocks, B) int64, in/out
    ones,  # (blocks, B) bool, in/out
    lanes,  # runs per block
    t0,
    n,
    log_every,
    last_t,
    snap_x,  # (R, k) state dtype, out
    snap_r,  # (R, k) float64, out
    track,  # bool: compute Γ_t into the next three and the Γ snapshots
    eps64,  # (R,) float64: ε as given
    dprev,  # (R,) float64, in/out: √V_{t-1}/α_{t-1}
    negs,  # (R,) int64, in/out: steps with Γ < 0
    gam,  # (R,) float64, in/out: Γ_{t-1}
    snap_g,  # (R, k) float64, out
    snap_n,  # (R, k) float64, out
):
    n_runs = x.shape[0]
    blocks = (n_runs + lanes - 1) // lanes
    table = bc.shape[2]
    for b in numba.prange(blocks):  # each block the whole window with its own table: the cores meet once
        q = rows[b]
        k0 = 0
        for c0 in range(0, n, table):
            cn = min(table, n - c0)
            _fill(betas[b, :q], bc[b], sq[b], t_one[b], ones[b], t0 + c0, cn)
            _block(
                b * lanes, min(n_runs, (b + 1) * lanes), coefs, problem_of, lr, lr_sqrt, weight, near, c2, b2, eps,
                neg_lr, ams, k1, kdiv, ksq, lo, hi, x_star, x, m, v, vmax, regret, bc[b], sq[b], ones[b], t0, c0, cn,
                k0, log_every, last_t, snap_x, snap_r, track, eps64, dprev, negs, gam, snap_g, snap_n,
            )  # fmt: skip
            for i in range(c0, c0 + cn):
                t = t0 + i
                if t % log_every == 0 or t == last_t:
                    k0 += 1


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
        w = (1.0 - b1).astype(dt)
        self.near = np.abs(w) < dt.type(0.5)  # torch.lerp's branch, fixed per run
        # its two formulas as one fma(d, weight, base): weight w, or −(1 − w) rounded then negated (exact)
        self.weight = np.where(self.near, w, -(dt.type(1.0) - w))
        self.b2, self.c2 = b2.astype(dt), (1.0 - b2).astype(dt)
        self.eps64 = f64(eps)
        self.eps = self.eps64.astype(dt)
        self.neg_lr = (-self.lr).astype(dt)  # _as(-α): the step once 1 − β1^t is 1.0 and α is constant
        self.ams = np.asarray(ams, np.bool_)[order]
        bias, corrected = np.asarray(bias, np.bool_)[order], np.asarray(corrected, np.bool_)[order]
        # β's a run's bias corrections read (β = 0 where it has none: 1 − 0^t = 1.0 exactly)
        beta_k1 = np.where(bias, b1, 0.0)
        beta_kdiv = np.where(bias & corrected, b2, 0.0)
        beta_ksq = np.where(bias & ~corrected, b2, 0.0)
        self.problem_of = np.asarray(problem_of, np.int64)[order]
        self.lo, self.hi = f64(lo).astype(dt), f64(hi).astype(dt)  # the single-run kernel's _as(lo), _as(hi)
        self.x_star = f64(x_star)
        self._x = f64(x0).astype(dt)
        self.m, self.v, self.vmax = np.zeros(n, dt), np.zeros(n, dt), np.zeros(n, dt)
        self._regret = np.zeros(n, np.float64)
        self._dprev, self._gamma = np.zeros(n, np.float64), np.full(n, np.nan)
        self._negs = np.zeros(n, np.int64)
        # runs per block: the runs shared evenly over numba's threads, whole vector iterations, at most LANES
        threads = numba.get_num_threads()
        per_thread = -(-n // threads)
        self.lanes = int(min(LANES, -(-per_thread // VECTOR) * VECTOR))
        # each block's table: its distinct β's (row 0 is β = 0), and each run's rows in its block's table
        blocks = -(-n // self.lanes)
        per_block = [np.unique(np.concatenate([[0.0], beta_k1[r0 : r0 + self.lanes], beta_kdiv[r0 : r0 + self.lanes],
                                               beta_ksq[r0 : r0 + self.lanes]]))
                     for r0 in range(0, n, self.lanes)]  # fmt: skip
        self.rows = np.array([len(u) for u in per_block], np.int64)
        self.betas = np.zeros((blocks, int(self.rows.max())))
        self.k1, self.kdiv, self.ksq = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64)
        for b, u in enumerate(per_block):
            r0, r1 = b * self.lanes, min(n, (b + 1) * self.lanes)
            self.betas[b, : len(u)] = u
            for rows, of in ((self.k1, beta_k1), (self.kdiv, beta_kdiv), (self.ksq, beta_ksq)):
                rows[r0:r1] = np.searchsorted(u, of[r0:r1])
        shape = (*self.betas.shape, TABLE_STEPS)  # × 16 bytes: 9 MB for a batch of phase's 100 × 100 grid
        self.bc, self.sq = np.empty(shape), np.empty(shape)
        self.t_one, self.ones = np.zeros(self.betas.shape, np.int64), np.zeros(self.betas.shape, np.bool_)

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

    @property
    def gamma(self) -> tuple[np.ndarray, np.ndarray]:
        """(Γ of the last step, steps with Γ < 0) of every run, in the caller's order (with ``track``)."""
        g, c = np.empty_like(self._gamma), np.empty_like(self._negs)
        g[self.order], c[self.order] = self._gamma, self._negs
        return g, c

    def advance(self, coefs, t0: int, n: int, log_every: int, last_t: int, snap_x, snap_r, snap_g=None,
                snap_n=None) -> None:  # fmt: skip
        """Steps t0 … t0 + n − 1 of every run; snapshots at the log points into ``snap_x``/``snap_r`` (R, k),
        and, if ``snap_g``/``snap_n`` are given, Γ_t and the fraction of steps with Γ < 0 into them."""
        track = snap_g is not None
        sx, sr = np.empty_like(snap_x), np.empty_like(snap_r)
        sg = np.empty_like(snap_r) if track else np.empty((0, 0))
        sn = np.empty_like(snap_r) if track else np.empty((0, 0))
        _advance(
            coefs, self.problem_of, self.lr, self.lr_sqrt, self.weight, self.near, self.c2, self.b2, self.eps,
            self.neg_lr, self.ams, self.k1, self.kdiv, self.ksq, self.lo, self.hi, self.x_star, self._x, self.m,
            self.v, self.vmax, self._regret, self.betas, self.rows, self.bc, self.sq, self.t_one, self.ones,
            self.lanes,
            t0, n, log_every, last_t, sx, sr, track, self.eps64, self._dprev, self._negs, self._gamma, sg, sn,
        )  # fmt: skip
        snap_x[self.order], snap_r[self.order] = sx, sr
        if track:
            snap_g[self.order], snap_n[self.order] = sg, sn
