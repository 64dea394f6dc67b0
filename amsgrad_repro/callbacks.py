"""torchbearer callbacks that both wings use (the synthetic problems and the real-data models).

Usage::

    from tqdm.auto import tqdm
    from amsgrad_repro.callbacks import Progress

    with tqdm(total=steps) as bar:
        trial = Trial(model, optimizer, loss, callbacks=[Progress(bar, every=100)]).for_train_steps(steps)
        trial.run()
"""

from __future__ import annotations

import torchbearer
from torchbearer.bases import Callback

from .events import EventWriter, ScalarRecord


class RunWriter(Callback):
    """A run's own TensorBoard writer (:class:`~amsgrad_repro.events.EventWriter`) for exactly ``log_dir``,
    opened at ``on_start`` and closed at ``on_end`` or by :meth:`close` (idempotent, for a stopped run). The
    loggers of both wings subclass it and write with ``self.writer``. A write error raises
    :class:`~amsgrad_repro.runs.WriteFailed` out of the Trial at once.

    With ``record`` (a :class:`ScalarRecord`) nothing touches the disk: the scalars go into the record, for a
    run on a Ray worker to return to the driver."""

    def __init__(self, log_dir: str, record: ScalarRecord | None = None) -> None:
        super().__init__()
        self.log_dir = log_dir
        self.record = record
        self.writer: EventWriter | ScalarRecord | None = None

    def on_start(self, state: dict) -> None:
        self.writer = self.record if self.record is not None else EventWriter(self.log_dir)

    def close(self) -> None:
        """Write out and close the writer (idempotent; the writer is dropped even if the close fails)."""
        writer, self.writer = self.writer, None
        if isinstance(writer, EventWriter):
            writer.close()

    def on_end(self, state: dict) -> None:
        self.close()


class Progress(Callback):
    """Advances a tqdm bar by ``every`` steps at a time (and by the remainder at the end), so the bar costs
    nothing on most steps. Reads ``state[BATCH]`` (0-based: step t = BATCH + 1)."""

    def __init__(self, bar, every: int = 1000) -> None:
        self.bar, self.every, self.shown = bar, every, 0

    def on_step_training(self, state: dict) -> None:
        t = state[torchbearer.BATCH] + 1
        if t - self.shown >= self.every:
            self.bar.update(t - self.shown)
            self.shown = t

    def on_end(self, state: dict) -> None:
        self.flush(state[torchbearer.BATCH] + 1 if torchbearer.BATCH in state else self.shown)

    def flush(self, t: int) -> None:
        """Bring the bar to step ``t`` (after a stop, the last completed step)."""
        if t > self.shown:
            self.bar.update(t - self.shown)
            self.shown = t
