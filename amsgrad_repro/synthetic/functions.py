"""The synthetic problems' maths without torch: the streams that pick f_t, F, x*, the counterexample presets.

Usage::

    from amsgrad_repro.synthetic.functions import BernoulliStream, LinearFunctions

    f = LinearFunctions(BernoulliStream(p=0.01, seed=3))   # f_t(x) = 1010·x with probability 0.01, else −10·x
    f.coefs(1, 5)                                            # the slopes c_1..c_5 (float64)
    f.x_star                                                 # −1.0, derived from the constants

This is what the fused engine reads, and it imports neither torch nor torchbearer, so ``online`` and
``stochastic`` on the fused engine start without them. :mod:`.problems` builds the Trial's ``nn.Module`` s on it
(``Online``, ``Stochastic``: the same numbers, with x as an ``nn.Parameter``); its docstring says how t counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: How many steps of a stream a problem module caches when read one step at a time.
_CACHE_STEPS = 4096
#: The precisions a run can use (``--dtype``): of x and of every optimizer state, in both engines.
DTYPES = ("float32", "float64")


class PeriodicStream:
    """The online schedule: step t is rare iff ``t mod period == 1`` (t is 1-based).

    Args:
        period: the paper's 101 (``C`` in Theorem 2). Must be ≥ 2 so that some steps are common.
    """

    def __init__(self, period: int = 101) -> None:
        if isinstance(period, bool) or not isinstance(period, (int, np.integer)) or not 2 <= period <= 2**62:
            raise ValueError(f"period must be an integer in [2, 2^62], got {period!r}")
        self.period = int(period)

    def rare(self, start: int, count: int) -> np.ndarray:
        """Booleans for t = start, …, start + count − 1: True where the rare function is played."""
        _check_window(start, count)
        rare = np.zeros(count, np.bool_)
        rare[(1 - start) % self.period :: self.period] = True  # index i is step start + i
        return rare

    @property
    def rare_fraction(self) -> float:
        """The long-run fraction of rare steps, 1/period."""
        return 1.0 / self.period

    def describe(self) -> dict:
        return {"kind": "periodic", "period": self.period}


class BernoulliStream:
    """The stochastic schedule: each step is rare with probability ``p``, independently, from a seeded stream.

    The stream is cut into blocks of ``block_size`` steps; block b (steps b·B + 1 … (b+1)·B) is drawn from
    its own generator, ``numpy.random.default_rng(SeedSequence(seed, spawn_key=(b,)))``, and step t is rare
    iff its uniform draw in [0, 1) is < p. Any window is therefore a pure function of (seed, t): the same seed
    gives the same functions however a run is chunked, logged or interrupted, and in whichever engine.

    Args:
        p: probability of the rare function (0.01 in the paper; (1+δ)/(C+1) in Theorem 3).
        seed: a non-negative integer.
        block_size: steps per generator block. Part of the stream's definition: changing it changes the draws.
    """

    def __init__(self, p: float = 0.01, seed: int = 0, block_size: int = 1 << 16) -> None:
        if not isinstance(p, (int, float)) or not 0.0 <= float(p) <= 1.0 or math.isnan(p):
            raise ValueError(f"p must be in [0, 1], got {p!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size!r}")
        self.p = float(p)
        self.seed = int(seed)
        self.block_size = int(block_size)
        self._cached_block = (-1, np.empty(0, dtype=bool))

    def _block(self, b: int) -> np.ndarray:
        if self._cached_block[0] != b:
            rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(b,)))
            self._cached_block = (b, rng.random(self.block_size) < self.p)
        return self._cached_block[1]

    def rare(self, start: int, count: int) -> np.ndarray:
        """Booleans for t = start, …, start + count − 1: True where the rare function is played."""
        _check_window(start, count)
        out = np.empty(count, dtype=bool)
        i = 0
        while i < count:
            b, offset = divmod(start + i - 1, self.block_size)
            n = min(count - i, self.block_size - offset)
            out[i : i + n] = self._block(b)[offset : offset + n]
            i += n
        return out

    @property
    def rare_fraction(self) -> float:
        """The expected fraction of rare steps, p."""
        return self.p

    def describe(self) -> dict:
        return {"kind": "bernoulli", "p": self.p, "seed": self.seed, "block_size": self.block_size}


def _check_window(start: int, count: int) -> None:
    if start < 1:
        raise ValueError(f"t is 1-based: a window cannot start at t = {start}")
    if count < 0:
        raise ValueError(f"window length must be >= 0, got {count}")


@dataclass(frozen=True)
class Bounds:
    """The feasible set F = [lo, hi]; projection onto it is a clamp."""

    lo: float = -1.0
    hi: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lo) and math.isfinite(self.hi) and self.lo < self.hi):
            raise ValueError(f"bounds must be finite with lo < hi, got [{self.lo}, {self.hi}]")


def minimiser_of_linear(slope: float, bounds: Bounds) -> float:
    """argmin over [lo, hi] of slope·x: lo if slope > 0, hi if slope < 0.

    With slope == 0 every point of F is a minimiser and the regret is the same for all of them; we return lo
    so that x* is always defined (the docstring of the caller should say when this happens).
    """
    return bounds.hi if slope < 0 else bounds.lo


class LinearFunctions:
    """f_t(x) = c_t·x on F = [lo, hi], with c_t = ``rare_coef`` where the stream says rare, else ``common_coef``.

    The maths only, without torch: what the fused engine reads (slopes, x₁ = ``x0``, F, x*, ``dtype``).
    :class:`amsgrad_repro.synthetic.problems.LinearProblem` is the same with the iterate as an ``nn.Parameter``,
    for the Trial. The optimum x* is *derived*: it minimises over F the
    long-run average function, whose slope is ``rare_fraction·rare_coef + (1 − rare_fraction)·common_coef``.
    For the paper's constants that slope is +10/101 (online) and +0.2 (stochastic), so x* = −1.
    """

    def __init__(
        self,
        stream: PeriodicStream | BernoulliStream,
        rare_coef: float = 1010.0,
        common_coef: float = -10.0,
        x0: float = 0.0,
        bounds: Bounds = Bounds(),
        dtype: str = "float32",
    ) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        for name, value in (("rare_coef", rare_coef), ("common_coef", common_coef), ("x0", x0)):
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value!r}")
        if not bounds.lo <= x0 <= bounds.hi:
            raise ValueError(f"x0 = {x0} lies outside F = [{bounds.lo}, {bounds.hi}]")
        self.stream = stream
        self.rare_coef = float(rare_coef)
        self.common_coef = float(common_coef)
        self.bounds = bounds
        self.x0 = float(x0)
        self.dtype = dtype
        self._cache_start = 1
        self._cache = np.empty(0)

    @property
    def mean_slope(self) -> float:
        """Slope of the average (online) or expected (stochastic) function."""
        q = self.stream.rare_fraction
        return q * self.rare_coef + (1.0 - q) * self.common_coef

    @property
    def x_star(self) -> float:
        """argmin over F of the average / expected function (see :func:`minimiser_of_linear`)."""
        return minimiser_of_linear(self.mean_slope, self.bounds)

    def coefs(self, start: int, count: int) -> np.ndarray:
        """The slopes c_t (float64) for t = start, …, start + count − 1."""
        return np.where(self.stream.rare(start, count), self.rare_coef, self.common_coef)

    def coef(self, t: int) -> float:
        """The slope c_t of f_t, read through a cached window of the stream."""
        i = t - self._cache_start
        if not 0 <= i < len(self._cache):
            self._cache_start, self._cache = t, self.coefs(t, _CACHE_STEPS)
            i = 0
        return float(self._cache[i])

    def describe(self) -> dict:
        return {
            "rare_coef": self.rare_coef,
            "common_coef": self.common_coef,
            "x0": self.x0,
            "dtype": self.dtype,
            "bounds": [self.bounds.lo, self.bounds.hi],
            "stream": self.stream.describe(),
        }


@dataclass(frozen=True)
class Preset:
    """A member of the paper's counterexample family: which settings it has and its constants as functions of
    C (and δ). ``theorem_betas`` are the (β1, β2) the theorem fixes, if it fixes them."""

    name: str
    settings: tuple[str, ...]
    summary: str
    default_c: float | None = None
    default_delta: float | None = None

    def constants(self, setting: str, c: float | None = None, delta: float | None = None) -> dict:
        """{"rare_coef", "common_coef", "period" | "p"} for ``setting``; raises ValueError on bad C, δ."""
        if setting not in self.settings:
            raise ValueError(f"preset {self.name} is for {' and '.join(self.settings)}, not {setting}")
        if c is not None and self.default_c is None:
            raise ValueError(f"--C does not apply to preset {self.name} (only theorem1, theorem2, theorem3 have a C)")
        if delta is not None and self.default_delta is None:
            raise ValueError(f"--delta does not apply to preset {self.name} (only theorem3 has a δ)")
        if c is not None and not (math.isfinite(c) and abs(c) <= 2**62):
            raise ValueError(f"--C must be finite and at most 2^62, got {c}")
        c = self.default_c if c is None else c
        delta = self.default_delta if delta is None else delta
        if self.name == "paper":
            base = {"rare_coef": 1010.0, "common_coef": -10.0}
            return base | ({"period": 101} if setting == "online" else {"p": 0.01})
        if self.name == "theorem1":
            if not c > 2:
                raise ValueError(f"theorem1 needs C > 2, got {c}")
            return {"rare_coef": float(c), "common_coef": -1.0, "period": 3}
        if self.name == "theorem2":
            if not (float(c).is_integer() and c >= 2):
                raise ValueError(f"theorem2 needs an integer C >= 2 (the period), got {c}")
            return {"rare_coef": float(c), "common_coef": -1.0, "period": int(c)}
        # theorem3
        if not (c > 0 and delta > 0 and (1 + delta) / (c + 1) <= 1):
            raise ValueError(f"theorem3 needs C > 0, δ > 0 and (1+δ)/(C+1) <= 1, got C={c}, δ={delta}")
        return {"rare_coef": float(c), "common_coef": -1.0, "p": (1 + delta) / (c + 1)}

    def theorem_betas(self, c: float | None = None) -> tuple[float, float] | None:
        """Theorem 1 fixes β1 = 0, β2 = 1/(1+C²); the others hold for any β1 < √β2."""
        if self.name != "theorem1":
            return None
        c = self.default_c if c is None else c
        return 0.0, 1.0 / (1.0 + c * c)


PRESETS = {
    p.name: p
    for p in [
        Preset("paper", ("online", "stochastic"), "Section 5: 1010·x / −10·x, period 101 or probability 0.01"),
        Preset("theorem1", ("online",), "Theorem 1: C·x if t mod 3 = 1 else −x (C > 2), β1 = 0, β2 = 1/(1+C²)", 3.0),
        Preset("theorem2", ("online",), "Theorem 2: C·x if t mod C = 1 else −x, for any β1 < √β2", 101.0),
        Preset(
            "theorem3",
            ("stochastic",),
            "Theorem 3: C·x with probability (1+δ)/(C+1) else −x, for any β1 < √β2",
            101.0,
            0.02,
        ),
    ]
}


def beta_condition(beta1: float, beta2: float) -> bool:
    """Theorems 2 and 3 (and AMSGrad's Theorem 4, as γ = β1/√β2 < 1) assume β1 < √β2."""
    return beta1 < math.sqrt(beta2)
