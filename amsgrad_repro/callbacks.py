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
