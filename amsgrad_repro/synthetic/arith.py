"""torch's CPU arithmetic, one rounding at a time, for the compiled kernels (:mod:`.fused`, :mod:`.lanes`).

Usage (inside ``numba.njit`` code only)::

    from .arith import _as, _fma, _lerp

    g = _as(c, x)                    # c rounded to x's dtype (float32 or float64)
    v = _fma(_as(c2 * g, x), g, _as(v * b2, x))   # v ← β2·v + (1 − β2)·g², as torch's addcmul_
    m = _lerp(m, g, w)               # m ← m + w·(g − m), as torch.lerp

Why these and not plain expressions: torch's CPU kernels for ``lerp_``, ``addcmul_`` and ``add_(…, alpha=…)``
are fused multiply-adds, and every scalar torch computes in Python is rounded to the tensor's dtype where the
kernel reads it. Copying that, one rounding at a time, is what makes the kernels equal to the Trial.
"""

from __future__ import annotations

import numba
import numpy as np
from numba.core import types
from numba.extending import intrinsic, overload


def _as(value, like):
    """``value`` rounded to the precision of ``like`` (the state's dtype): ``np.float32(value)`` in a float32 run,
    ``np.float64(value)`` in a float64 one. The kernel is compiled once per state dtype."""


@overload(_as, inline="always")
def _as_overload(value, like):
    if isinstance(like, types.Float) and like.bitwidth == 32:
        return lambda value, like: np.float32(value)
    return lambda value, like: np.float64(value)


@intrinsic
def _fma64(typingctx, a, b, c):
    """LLVM's ``llvm.fma.f64``: a·b + c with one rounding (the CPU's FMA instruction, or libm's fma)."""

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return types.float64(types.float64, types.float64, types.float64), codegen


@intrinsic
def _fma32(typingctx, a, b, c):
    """LLVM's ``llvm.fma.f32``: a·b + c with one rounding (the CPU's FMA instruction, or libm's fmaf)."""

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return types.float32(types.float32, types.float32, types.float32), codegen


def _fma(a, b, c):
    """a·b + c with one rounding, in the dtype of ``c`` (what torch's CPU kernels compute for lerp, addcmul and
    add with alpha, in float32 and float64 alike). In float32 it is the float32 FMA itself: an earlier version
    emulated it by one float64 evaluation rounded to float32, which can round twice and which kept the lane
    kernel's loops 4 lanes wide; every lockstep test against torch passes with either."""


@overload(_fma, inline="always")
def _fma_overload(a, b, c):
    if isinstance(c, types.Float) and c.bitwidth == 32:
        return lambda a, b, c: _fma32(np.float32(a), np.float32(b), np.float32(c))
    return lambda a, b, c: _fma64(np.float64(a), np.float64(b), np.float64(c))


@numba.njit(inline="always")
def _lerp(start, end, weight):
    """torch.lerp: start + w·(end − start) for |w| < 0.5, else end − (end − start)·(1 − w), as FMAs."""
    d = _as(end - start, start)
    if abs(weight) < _as(0.5, start):
        return _fma(weight, d, start)
    return _fma(-d, _as(_as(1.0, start) - weight, start), end)
