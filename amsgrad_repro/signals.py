"""What stops a run: SIGINT and SIGTERM, and where a stop must wait.

Usage::

    from amsgrad_repro.signals import defer_signals, exit_code, handle_signals

    with handle_signals():                 # SIGINT raises KeyboardInterrupt, SIGTERM raises Terminated (one)
        with defer_signals() as sig:       # a compiled kernel's window: a signal only sets sig.hit
            ...
            if sig.hit:
                ...                        # stop where it can
    sys.exit(exit_code(interrupted))       # 130 for Ctrl-C, 143 for SIGTERM

**SIGTERM is Ctrl-C.** :func:`handle_signals` makes both raise ``KeyboardInterrupt`` (SIGTERM as
:class:`Terminated`), remembers which one came (:func:`stopped_by`), and :func:`exit_code` turns it into 130 or
143. :func:`defer_signals` holds them off (recording them) where a stop must wait: a compiled kernel's window, the
final writes. What a stopped run leaves behind is :class:`amsgrad_repro.runs.Stopping`'s job.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a job scheduler, a container stop), raised where Ctrl-C would raise KeyboardInterrupt."""


_stopped_by: list[int] = []  # the signals received since handle_signals() was entered, in order


def _record(signum: int) -> None:
    _stopped_by.append(signum)


def stopped_by() -> int | None:
    """The first signal that stopped the current invocation, or None."""
    return _stopped_by[0] if _stopped_by else None


def signal_name(signum: int | None) -> str | None:
    return None if signum is None else signal.Signals(signum).name


def exit_code(interrupted: bool) -> int:
    """0, or 128 + the signal: 130 for Ctrl-C (also when no signal was seen), 143 for SIGTERM."""
    if not interrupted:
        return 0
    return 128 + (stopped_by() or signal.SIGINT)


@contextlib.contextmanager
def handle_signals() -> Iterator[None]:
    """Within the block SIGINT raises ``KeyboardInterrupt`` and SIGTERM raises :class:`Terminated` (a
    KeyboardInterrupt), each recorded for :func:`stopped_by`. Outside the main thread it does nothing."""
    _stopped_by.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum, frame) -> None:
        _record(signum)
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


class defer_signals:
    """Within the block SIGINT and SIGTERM only set :attr:`hit` (and are recorded for :func:`stopped_by`);
    the code inside checks ``hit`` where it can stop. On exit the previous handlers come back, and if a
    signal came and ``reraise`` is set, it is raised then as it would have been."""

    def __init__(self, reraise: bool = False) -> None:
        self.hit = False
        self.reraise = reraise
        self._old: dict = {}

    def __enter__(self) -> defer_signals:
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, signum, frame) -> None:
        self.hit = True
        _record(signum)

    def __exit__(self, exc_type, *exc) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)
        if self.reraise and exc_type is None:
            self.raise_if_hit()

    def raise_if_hit(self) -> None:
        """Raise the signal that came within the block, if one did, as it would have been raised."""
        if self.hit:
            raise_stop()


def raise_stop() -> None:
    """Raise what the first signal received raises (:class:`Terminated` for SIGTERM, else KeyboardInterrupt):
    for code that saw a stop reported (a kernel's ``interrupted``) and must now stop its caller too."""
    raise Terminated() if stopped_by() == signal.SIGTERM else KeyboardInterrupt()
