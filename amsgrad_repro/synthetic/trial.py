"""The torchbearer side: loss, metrics, callbacks and the Trial that runs one optimizer on one problem.

Usage::

    import torch
    from amsgrad_repro.synthetic.problems import Online
    from amsgrad_repro.synthetic.trial import build_trial

    problem = Online()
    opt = torch.optim.Adam(problem.parameters(), lr=1e-3, betas=(0.9, 0.99), amsgrad=True)
    trial = build_trial(problem, opt, steps=20_000, log_dir="logs/demo/amsgrad", log_every=1000)
    trial.run()
    print(problem.x.item())

One step of the Trial, in torchbearer's order, is:

1. :func:`load_step` (the Trial's loader) puts the 1-based step t in ``state[X]`` and the point about to be
   played, x_t, in ``state[PLAYED]``;
2. the closure calls ``model(t)`` = f_t(x_t), the loss :func:`linear_loss` returns it, backward gives g_t;
3. ``optimizer.step()``, then, inside the same call, the :class:`Projection` hook clamps x onto F;
4. the metrics ``x`` (x_{t+1}, the projected iterate) and ``average_regret`` (R_t / t) are computed, and with
   ``gamma=True`` :class:`GammaMetric`'s ``gamma`` (Γ_t) and ``gamma_negative_steps``;
5. ``on_step_training`` callbacks: :class:`ScalarLogger` writes every ``log_every`` steps, :class:`Progress`
   moves the bar.

The maths (f_t, x*, the stream) lives in :mod:`amsgrad_repro.synthetic.problems`; nothing here needs more than one
line of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch
import torchbearer
from torchbearer import Trial
from torchbearer.bases import Callback, Metric
from torchbearer.metrics import to_dict

from ..callbacks import Progress, RunWriter
from ..events import ScalarRecord
from ..gamma import inverse_step, why_undefined
from .problems import LinearProblem

__all__ = ["GammaMetric", "Progress", "Projection", "ScalarLogger", "build_trial", "linear_loss", "load_step"]

#: State key for x_t, the point played at step t (read before the optimizer moves it).
PLAYED = torchbearer.state_key("played_x")

OptimizerOrFactory = torch.optim.Optimizer | Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]


def load_step(state: dict) -> None:
    """The Trial's loader. Reads ``state[BATCH]`` (0-based) and ``state[MODEL]``; writes ``state[X]`` = t =
    BATCH + 1 (the paper's 1-based step), ``state[Y_TRUE]`` = None and ``state[PLAYED]`` = x_t as a float."""
    state[torchbearer.X] = state[torchbearer.BATCH] + 1
    state[torchbearer.Y_TRUE] = None
    state[PLAYED] = state[torchbearer.MODEL].x.item()


def linear_loss(state: dict) -> torch.Tensor:
    """The loss is the model's output, f_t(x_t). Reads ``state[Y_PRED]``."""
    return state[torchbearer.Y_PRED]


@to_dict
class IterateMetric(Metric):
    """``x``: the iterate after step t's update and projection, x_{t+1}. Reads ``state[MODEL]``."""

    def __init__(self) -> None:
        super().__init__("x")

    def process(self, state: dict) -> float:
        return state[torchbearer.MODEL].x.item()


@to_dict
class AverageRegretMetric(Metric):
    """``average_regret``: R_t / t with R_t = Σ_{s≤t} f_s(x_s) − f_s(x*).

    Reads ``state[X]`` (t), ``state[PLAYED]`` (x_t) and ``state[MODEL]`` (c_t and x*). Each term is
    c_s·(x_s − x*) computed in float64 from the float32 iterate, and summed in float64 in step order, so the
    fused engine can reproduce the same sum.
    """

    def __init__(self) -> None:
        super().__init__("average_regret")
        self.total = 0.0

    def reset(self, state: dict) -> None:
        self.total = 0.0

    def process(self, state: dict) -> float:
        model: LinearProblem = state[torchbearer.MODEL]
        t = state[torchbearer.X]
        self.total += model.coef(t) * (state[PLAYED] - model.x_star)
        return self.total / t


class GammaMetric(Metric):
    """``gamma``: Γ_t = √V_t/α_t − √V_{t−1}/α_{t−1} of x's coordinate after step t (:mod:`amsgrad_repro.gamma`;
    NaN at t = 1, where V_0 does not exist), and ``gamma_negative_steps``: the fraction of steps 2..t where it
    was negative (the effective step size grew). Reads ``state[X]`` (t), ``state[MODEL]`` and
    ``state[OPTIMIZER]``'s state: no second copy of the update."""

    def __init__(self) -> None:
        super().__init__("gamma")
        self.previous = math.nan
        self.gamma = math.nan
        self.negative = 0

    def reset(self, state: dict) -> None:
        self.previous, self.gamma, self.negative = math.nan, math.nan, 0

    def process(self, state: dict) -> dict[str, float]:
        t = state[torchbearer.X]
        d = float(inverse_step(state[torchbearer.OPTIMIZER], state[torchbearer.MODEL].x))  # x is 0-dimensional
        if t >= 2:
            self.gamma = d - self.previous
            self.negative += self.gamma < 0
        self.previous = d
        return {"gamma": self.gamma, "gamma_negative_steps": self.negative / (t - 1) if t >= 2 else math.nan}


class Projection(Callback):
    """Projects x onto F = [lo, hi] (a clamp) after every optimizer step.

    At ``on_start`` it registers a step post-hook on ``state[OPTIMIZER]`` that clamps ``state[MODEL].x``; the
    clamp therefore happens inside ``optimizer.step()``, before torchbearer computes the metrics, so no metric
    or logger ever sees an unprojected iterate. ``on_end`` removes the hook. Reads ``state[MODEL]`` and
    ``state[OPTIMIZER]``.
    """

    def __init__(self, lo: float = -1.0, hi: float = 1.0) -> None:
        if not lo < hi:
            raise ValueError(f"projection needs lo < hi, got [{lo}, {hi}]")
        self.lo, self.hi = lo, hi
        self._handle = None

    def on_start(self, state: dict) -> None:
        x = state[torchbearer.MODEL].x

        def clamp(optimizer, args, kwargs) -> None:
            with torch.no_grad():
                x.clamp_(self.lo, self.hi)

        self._handle = state[torchbearer.OPTIMIZER].register_step_post_hook(clamp)

    def on_end(self, state: dict) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


class ScalarLogger(RunWriter):
    """Writes every metric as a TensorBoard scalar at steps t = log_every, 2·log_every, … and at t = ``steps``.

    The tags are the metric names (``x``, ``average_regret``) and the step is the paper's t, so runs written
    into sibling directories are drawn in one chart. It writes with the spine's event writer
    (:class:`~amsgrad_repro.events.EventWriter`) into exactly ``log_dir`` (no suffix). It remembers the last
    completed step so that an interrupted run can still write it (:meth:`write_last`) and close cleanly
    (:meth:`close`). Reads ``state[X]`` and ``state[METRICS]``.
    """

    def __init__(
        self, log_dir: str, log_every: int = 1000, steps: int | None = None, record: ScalarRecord | None = None
    ) -> None:
        super().__init__(log_dir, record)
        if log_every < 1:
            raise ValueError(f"log_every must be >= 1, got {log_every}")
        self.log_every = log_every
        self.steps = steps
        self.last_step = 0
        self.last_metrics: dict[str, float] = {}
        self.logged_step = 0

    def on_step_training(self, state: dict) -> None:
        t = state[torchbearer.X]
        self.last_step, self.last_metrics = t, dict(state[torchbearer.METRICS])
        if t % self.log_every == 0 or t == self.steps:
            self.write_last()

    def write_last(self) -> None:
        """Write the last completed step, unless it is already written."""
        if self.writer is not None and self.last_step > self.logged_step:
            for tag, value in self.last_metrics.items():
                self.writer.add_scalar(tag, value, self.last_step)
            self.logged_step = self.last_step


def build_trial(
    problem: LinearProblem,
    optimizer: OptimizerOrFactory,
    steps: int,
    log_dir: str | None = None,
    log_every: int = 1000,
    callbacks: Sequence[Callback] = (),
    gamma: bool = False,
) -> Trial:
    """A torchbearer Trial that runs ``optimizer`` on ``problem`` for ``steps`` steps, one epoch.

    Args:
        problem: the model; its parameter ``x`` is what the optimizer moves.
        optimizer: any ``torch.optim.Optimizer`` over ``problem.parameters()``, or a callable that builds one
            from them (e.g. ``functools.partial(torch.optim.SGD, lr=0.1)``).
        steps: number of steps T.
        log_dir: if given, a :class:`ScalarLogger` writes ``x`` and ``average_regret`` there every
            ``log_every`` steps and at t = T (no graph is written).
        callbacks: more torchbearer callbacks, run after the projection and the logger.
        gamma: also the metrics ``gamma`` and ``gamma_negative_steps`` (:class:`GammaMetric`); ValueError if Γ is
            not defined for this optimizer (:func:`amsgrad_repro.gamma.why_undefined`).

    Returns:
        the Trial; call ``.run()``. Its metrics are ``x`` and ``average_regret`` (and Γ's two).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        optimizer = optimizer(problem.parameters())
    if gamma and why_undefined(optimizer) is not None:
        raise ValueError(why_undefined(optimizer))
    cbs: list[Callback] = [Projection(problem.bounds.lo, problem.bounds.hi)]
    if log_dir is not None:
        cbs.append(ScalarLogger(log_dir, log_every, steps))
    cbs.extend(callbacks)
    trial = Trial(
        problem,
        optimizer,
        linear_loss,
        metrics=[IterateMetric(), AverageRegretMetric(), *([GammaMetric()] if gamma else [])],
        callbacks=cbs,
        verbose=0,
    )
    return trial.for_train_steps(steps).with_loader(load_step)
