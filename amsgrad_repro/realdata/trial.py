"""The torchbearer side of the real-data experiments: batches, loss, callbacks and the Trial for one run.

Usage::

    from amsgrad_repro.realdata.data import load
    from amsgrad_repro.realdata.models import build_model
    from amsgrad_repro.realdata.trial import Batches, Evaluate, RunLogger, SqrtDecay, build_trial

    data = load("mnist")
    model = build_model("logreg", data.shape, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.99))
    batches = Batches(data.x_train, data.y_train, batch_size=128, seed=0)
    callbacks = [SqrtDecay(), Evaluate(data.x_test, data.y_test, every=500, steps=2000),
                 RunLogger("logs/mine/adam", log_every=50, steps=2000)]
    build_trial(model, optimizer, batches, steps=2000, callbacks=callbacks).run()

One iteration of the Trial, in torchbearer's order:

1. :meth:`Batches.load` (the Trial's loader) puts minibatch t's images, scaled to [0, 1], in ``state[X]`` and
   its labels in ``state[Y_TRUE]``; :class:`SqrtDecay` (``on_sample``) sets every group's lr to α/√t;
2. the closure: zero_grad, ``model(X)``, :func:`cross_entropy_loss`, backward; then ``optimizer.step()``;
3. ``on_step_training``: :class:`Evaluate` computes the test loss and accuracy every ``every`` iterations and
   at the last one, with ``--gamma`` :class:`GammaStats` reads Γ from the optimizer's state at the logged
   iterations, :class:`RunLogger` writes the scalars, :class:`~amsgrad_repro.callbacks.Progress` moves
   the bar.

No torchbearer metrics are used: the logger reads ``state[LOSS]`` directly, so the hot path is one
``loss.item()`` per iteration beyond the plain torch loop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
import torchbearer
from torchbearer import Trial
from torchbearer.bases import Callback

from ..callbacks import RunWriter
from ..events import ScalarRecord
from .models import to_input

#: State key for the latest test metrics, ``{"test_loss": …, "test_accuracy": …}``, and the iteration they
#: were computed at (written by :class:`Evaluate`, read by :class:`RunLogger`).
TEST_METRICS = torchbearer.state_key("test_metrics")
#: the iteration ``TEST_METRICS`` belongs to
TEST_AT = torchbearer.state_key("test_at")
#: State key for Γ's numbers at a logged iteration, ``{"gamma_negative_coordinates": …, "gamma_step_growth": …}``
#: (written by :class:`GammaStats`, read by :class:`RunLogger`), and the iteration they belong to
GAMMA_METRICS = torchbearer.state_key("gamma_metrics")
GAMMA_AT = torchbearer.state_key("gamma_at")


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of the n training samples in ``epoch`` (0-based) of the run with ``seed``: a permutation
    from ``numpy.random.default_rng([seed, epoch])``, a pure function of (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def batch_indices(seed: int, t: int, n: int, batch_size: int) -> np.ndarray:
    """The sample indices of minibatch t (1-based). Each epoch has ⌊n / batch_size⌋ full batches; the last
    n mod batch_size samples of an epoch's order are skipped, so every batch has exactly ``batch_size``."""
    per_epoch = n // batch_size
    epoch, k = divmod(t - 1, per_epoch)
    return epoch_order(seed, epoch, n)[k * batch_size : (k + 1) * batch_size]


class Batches:
    """The training set as one uint8 tensor and minibatches by index (:func:`batch_indices`), with the
    current epoch's order cached. The same ``seed`` gives every optimizer of a run the same batches."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, device: str = "cpu") -> None:
        if not 1 <= batch_size <= len(y):
            raise ValueError(f"batch size must be in [1, {len(y)}], got {batch_size}")
        self.x = torch.from_numpy(np.ascontiguousarray(x)).to(device)
        self.y = torch.from_numpy(np.ascontiguousarray(y)).to(device)
        self.batch_size, self.seed = batch_size, seed
        self.n = len(y)
        self.per_epoch = self.n // batch_size
        self._epoch, self._order = -1, torch.empty(0, dtype=torch.long)

    def indices(self, t: int) -> torch.Tensor:
        epoch, k = divmod(t - 1, self.per_epoch)
        if epoch != self._epoch:
            self._epoch = epoch
            self._order = torch.from_numpy(epoch_order(self.seed, epoch, self.n)).to(self.x.device)
        return self._order[k * self.batch_size : (k + 1) * self.batch_size]

    def load(self, state: dict) -> None:
        """The Trial's loader. Reads ``state[BATCH]`` (0-based; t = BATCH + 1); writes ``state[X]`` (images in
        [0, 1]) and ``state[Y_TRUE]`` (labels) of minibatch t."""
        idx = self.indices(state[torchbearer.BATCH] + 1)
        state[torchbearer.X] = to_input(self.x[idx])
        state[torchbearer.Y_TRUE] = self.y[idx]


def cross_entropy_loss(state: dict) -> torch.Tensor:
    """Softmax cross-entropy, mean over the batch. Reads ``state[Y_PRED]`` and ``state[Y_TRUE]``."""
    return F.cross_entropy(state[torchbearer.Y_PRED], state[torchbearer.Y_TRUE])


class SqrtDecay(Callback):
    """α_t = α/√t (t 1-based), the paper's step size for logistic regression, for any optimizer: before each
    step every parameter group's lr is set to its initial lr / √t. Reads ``state[OPTIMIZER]``, ``state[BATCH]``."""

    def __init__(self) -> None:
        self.base: list[float] = []

    def on_start(self, state: dict) -> None:
        self.base = [group["lr"] for group in state[torchbearer.OPTIMIZER].param_groups]

    def on_sample(self, state: dict) -> None:
        t = state[torchbearer.BATCH] + 1
        for group, alpha in zip(state[torchbearer.OPTIMIZER].param_groups, self.base, strict=True):
            group["lr"] = alpha / math.sqrt(t)


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 2048) -> dict[str, float]:
    """Mean cross-entropy and accuracy of ``model`` over the whole of (x uint8, y), in chunks, in eval mode
    (dropout off); the model's mode is restored afterwards."""
    was_training = model.training
    model.eval()
    total, correct = 0.0, 0
    try:
        for start in range(0, len(y), chunk):
            logits = model(to_input(x[start : start + chunk]))
            target = y[start : start + chunk]
            total += F.cross_entropy(logits, target, reduction="sum").item()
            correct += int((logits.argmax(dim=1) == target).sum())
    finally:
        model.train(was_training)
    return {"test_loss": total / len(y), "test_accuracy": correct / len(y)}


class Evaluate(Callback):
    """Test loss and accuracy over the whole test set every ``every`` iterations and at t = ``steps``, into
    ``state[TEST_METRICS]`` and ``state[TEST_AT]``. Reads ``state[MODEL]`` and ``state[BATCH]``."""

    def __init__(self, x: np.ndarray, y: np.ndarray, every: int, steps: int, device: str = "cpu") -> None:
        self.x = torch.from_numpy(np.ascontiguousarray(x)).to(device)
        self.y = torch.from_numpy(np.ascontiguousarray(y)).to(device)
        self.every, self.steps = every, steps

    def on_step_training(self, state: dict) -> None:
        t = state[torchbearer.BATCH] + 1
        if t % self.every == 0 or t == self.steps:
            state[TEST_METRICS] = evaluate(state[torchbearer.MODEL], self.x, self.y)
            state[TEST_AT] = t


def gamma_stats(before: np.ndarray, after: np.ndarray) -> dict[str, float]:
    """Γ over every coordinate from √V/α before and after one step (:func:`amsgrad_repro.gamma.inverse_step`):

    - ``gamma_negative_coordinates``: the fraction of coordinates with Γ < 0, whose effective step size α/√V grew;
    - ``gamma_step_growth``: the median, over those coordinates, of how much it grew, (√V/α)_before/(√V/α)_after
      − 1 (0 when none grew): a robust size, unmoved by the few coordinates whose v was near 0.
    """
    grew = after < before  # Γ = after − before < 0
    count = int(np.count_nonzero(grew))
    growth = 0.0
    if count:
        ratio = before[grew]
        ratio /= after[grew]
        growth = float(np.median(ratio, overwrite_input=True) - 1.0)  # in place: this runs at every logged t
    return {"gamma_negative_coordinates": count / len(grew), "gamma_step_growth": growth}


class GammaStats(Callback):
    """Γ_{t} = √V_t/α_t − √V_{t−1}/α_{t−1} on every coordinate of the model at each logged iteration t (every
    ``every`` iterations and at t = ``steps``), summarised by :func:`gamma_stats` into ``state[GAMMA_METRICS]``
    and ``state[GAMMA_AT]``. It reads the optimizer's state only at iterations t − 1 and t (no copy of the update,
    nothing on the other iterations): √V_{t−1}/α_{t−1} is kept from iteration t − 1. Reads ``state[BATCH]``,
    ``state[MODEL]`` and ``state[OPTIMIZER]`` (Γ must be defined for it: :func:`amsgrad_repro.gamma.why_undefined`).
    """

    def __init__(self, every: int, steps: int) -> None:
        self.every, self.steps = every, steps
        self.before: np.ndarray | None = None

    def _logged(self, t: int) -> bool:
        return t % self.every == 0 or t == self.steps

    @staticmethod
    def _inverse_steps(state: dict) -> np.ndarray | None:
        from ..gamma import inverse_step

        optimizer = state[torchbearer.OPTIMIZER]
        parts = [inverse_step(optimizer, p) for p in state[torchbearer.MODEL].parameters()]
        parts = [part.ravel() for part in parts if part is not None]
        return np.concatenate(parts) if parts else None

    def on_step_training(self, state: dict) -> None:
        t = state[torchbearer.BATCH] + 1
        now = None
        if self._logged(t) and self.before is not None:
            now = self._inverse_steps(state)
            if now is not None and len(now) == len(self.before):
                state[GAMMA_METRICS] = gamma_stats(self.before, now)
                state[GAMMA_AT] = t
        self.before = None
        if self._logged(t + 1):
            self.before = now if now is not None else self._inverse_steps(state)


class RunLogger(RunWriter):
    """Writes one run's scalars, keyed by iteration t, with the spine's event writer into ``log_dir``:

    - ``train_loss``: the mean minibatch loss over the last ``log_every`` iterations, at t = log_every,
      2·log_every, … and at t = ``steps`` (then over the iterations since the last point);
    - ``test_loss``, ``test_accuracy``: whenever :class:`Evaluate` has just computed them;
    - ``gamma_negative_coordinates``, ``gamma_step_growth``: whenever :class:`GammaStats` has (``--gamma``).

    It remembers what it wrote last (:attr:`last`, :attr:`last_step`), so that a stopped run can write its
    partial window (:meth:`write_last`) and report exactly what TensorBoard holds. Reads ``state[BATCH]``,
    ``state[LOSS]``, ``state[TEST_METRICS]``, ``state[TEST_AT]``, ``state[GAMMA_METRICS]`` and ``state[GAMMA_AT]``.
    """

    def __init__(self, log_dir: str, log_every: int, steps: int, record: ScalarRecord | None = None) -> None:
        super().__init__(log_dir, record)
        if log_every < 1:
            raise ValueError(f"log_every must be >= 1, got {log_every}")
        self.log_every, self.steps = log_every, steps
        self.window_sum, self.window_n = 0.0, 0
        self.step = 0  # the last completed iteration
        self.last: dict[str, float] = {}  # tag → last value written
        self.last_step: dict[str, int] = {}  # tag → iteration it was written at

    def _write(self, tag: str, value: float, t: int) -> None:
        self.writer.add_scalar(tag, value, t)
        self.last[tag], self.last_step[tag] = value, t

    def on_step_training(self, state: dict) -> None:
        t, loss = state[torchbearer.BATCH] + 1, state[torchbearer.LOSS].item()
        # one assignment (no call inside it, so no signal handler between its parts): a KeyboardInterrupt leaves the
        # iteration counted with its loss or not at all, and the summary's iterations_done is the events' last step
        self.step, self.window_sum, self.window_n = t, self.window_sum + loss, self.window_n + 1
        if t % self.log_every == 0 or t == self.steps:
            self.write_last()
        if state.get(TEST_AT) == t:
            for tag, value in state[TEST_METRICS].items():
                self._write(tag, value, t)
        if state.get(GAMMA_AT) == t:
            for tag, value in state[GAMMA_METRICS].items():
                self._write(tag, value, t)

    def write_last(self) -> None:
        """Write the mean loss of the iterations since the last point, if there are any."""
        if self.writer is not None and self.window_n:
            self._write("train_loss", self.window_sum / self.window_n, self.step)
            self.window_sum, self.window_n = 0.0, 0


def build_trial(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Batches,
    steps: int,
    callbacks: Sequence[Callback] = (),
) -> Trial:
    """A torchbearer Trial that trains ``model`` with ``optimizer`` for ``steps`` minibatches of ``batches``,
    loss :func:`cross_entropy_loss`, no metrics, the given callbacks (in order). Call ``.run()``."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    trial = Trial(model, optimizer, cross_entropy_loss, metrics=[], callbacks=list(callbacks), verbose=0)
    return trial.for_train_steps(steps).with_loader(batches.load)
