"""The paper's synthetic problems: linear losses on F = [lo, hi], and the streams that pick them.

Usage::

    from amsgrad_repro.synthetic.problems import Online, Stochastic

    online = Online()                 # f_t(x) = 1010·x if t mod 101 = 1 else −10·x
    online(1)                         # tensor: f_1(x_1) = 1010·x_1, with x_1 = 0
    online.x_star                     # −1.0, derived from the constants
    Stochastic(seed=3).coefs(1, 5)    # the slopes of f_1..f_5 for seed 3

Every f_t here is linear, f_t(x) = c_t·x, so a problem is a *stream* that says, for each step t, whether
the rare slope (``rare_coef``, 1010 in the paper) or the common one (``common_coef``, −10) is in force.
The streams are small objects of their own because two engines read them: the torchbearer Trial one step
at a time, the fused engine in windows of thousands of steps. Both read the same numbers.

**t is 1-based, as in the paper.** The first function is f_1, and in the online problem the rare step is
t = 1, 102, 203, … (t mod period = 1). torchbearer's "Breaking ADAM" tutorial and labml_nn count from 0
(their batch index), so their first rare step is our t = 2: their runs are ours shifted by one step.
"""

from __future__ import annotations

import torch
from torch import nn

from .functions import (  # noqa: F401  (re-exported: the problems' maths live there)
    _CACHE_STEPS,
    DTYPES,
    PRESETS,
    BernoulliStream,
    Bounds,
    LinearFunctions,
    PeriodicStream,
    Preset,
    beta_condition,
    minimiser_of_linear,
)


class LinearProblem(nn.Module, LinearFunctions):
    """f_t(x) = c_t·x on F = [lo, hi] (:class:`~.functions.LinearFunctions`: the slopes, F, x*), as a module that
    owns the iterate: ``x`` is an ``nn.Parameter`` (a 0-d tensor of ``dtype``, float32 unless asked, x₁ = ``x0``;
    optimizers keep their state in the same dtype), and ``forward(t)`` returns f_t(x) for the 1-based step t.
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
        nn.Module.__init__(self)
        LinearFunctions.__init__(self, stream, rare_coef, common_coef, x0, bounds, dtype)
        self.x = nn.Parameter(torch.tensor(self.x0, dtype=getattr(torch, dtype)))

    def forward(self, t: int, state: dict | None = None) -> torch.Tensor:
        """f_t(x) = c_t·x at the current iterate. ``state`` is accepted (and unused) so torchbearer passes it."""
        return self.coef(int(t)) * self.x


class Online(LinearProblem):
    """The paper's online problem: f_t(x) = rare_coef·x if t mod period = 1, else common_coef·x (1-based t)."""

    def __init__(
        self,
        rare_coef: float = 1010.0,
        common_coef: float = -10.0,
        period: int = 101,
        x0: float = 0.0,
        bounds: Bounds = Bounds(),
        dtype: str = "float32",
    ) -> None:
        super().__init__(PeriodicStream(period), rare_coef, common_coef, x0, bounds, dtype)


class Stochastic(LinearProblem):
    """The paper's stochastic problem: f_t(x) = rare_coef·x with probability p, else common_coef·x.

    The draws come from :class:`BernoulliStream` (``p``, ``seed``), so two problems with the same seed play
    the same functions.
    """

    def __init__(
        self,
        rare_coef: float = 1010.0,
        common_coef: float = -10.0,
        p: float = 0.01,
        seed: int = 0,
        x0: float = 0.0,
        bounds: Bounds = Bounds(),
        dtype: str = "float32",
    ) -> None:
        super().__init__(BernoulliStream(p, seed), rare_coef, common_coef, x0, bounds, dtype)


SETTINGS = {"online": Online, "stochastic": Stochastic}
