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
from torchbearer.callbacks.tensor_board import AbstractTensorBoard


class ScalarRecord:
    """What a run on a Ray worker writes instead of events: ``add_scalar`` keeps (tag, value, step) in memory,
    and the driver replays :attr:`scalars` into a real writer (:meth:`replay`), so the events are the same."""

    def __init__(self) -> None:
        self.scalars: list[tuple[str, float, int]] = []

    def add_scalar(self, tag: str, value: float, global_step: int) -> None:
        self.scalars.append((tag, float(value), int(global_step)))

    @staticmethod
    def replay(scalars: list[tuple[str, float, int]], log_dir: str) -> None:
        """Write ``scalars`` as one run's TensorBoard events in ``log_dir`` (tensorboardX, as the loggers do)."""
        from tensorboardX import SummaryWriter

        writer = SummaryWriter(log_dir)
        try:
            for tag, value, step in scalars:
                writer.add_scalar(tag, value, step)
        finally:
            writer.close()


class RunWriter(AbstractTensorBoard):
    """A run's own TensorBoard writer: torchbearer's tensorboardX writer for exactly ``log_dir`` (no suffix),
    opened at ``on_start`` and closed at ``on_end`` or by :meth:`close` (idempotent, for a stopped run). The
    loggers of both wings subclass it and write with ``self.writer``. (Two callbacks must not share one
    directory: torchbearer 0.5.5's ``close_writer`` drops the shared writer at the first close.)

    With ``record`` (a :class:`ScalarRecord`) nothing touches the disk: the scalars go into the record, for a
    run on a Ray worker to return to the driver."""

    def __init__(self, log_dir: str, record: ScalarRecord | None = None) -> None:
        super().__init__(log_dir=log_dir)
        self.record = record

    def on_start(self, state: dict) -> None:
        if self.record is not None:
            self.writer = self.record
        else:
            self.get_writer()

    def close(self) -> None:
        """Flush and close the writer (idempotent)."""
        if self.writer is not None:
            if self.record is None:
                self.close_writer()
            self.writer = None

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
