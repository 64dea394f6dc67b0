"""Worker processes on this machine for a grid's runs (``--jobs N``): the same interface as the Ray backend.

Usage::

    from amsgrad_repro.pool import Pool

    with Pool(jobs=2, shared=data, preload=["torch"]) as pool:   # each worker gets its own copy of ``data``
        for key, outcome in pool.run(task, [(key, args), ...], on_progress=lambda key, n: bar.update(n)):
            ...                                       # outcome: the task's return value, or a TaskFailed

A task is a plain module-level function; in a worker, :func:`shared` returns the ``shared`` object the pool was
built with (the data set, sent to each worker once, not with every task), and :func:`report` sends the driver
progress as the task goes (``report(key, n)``: n more units of the task ``key``; call it in batches), which
:meth:`Pool.run` hands to ``on_progress`` while it waits, so a bar moves with the work, not only when a run ends.
What stays in the driver is what stays there on Ray: every file, the progress bar, the signals. Workers are forked
from a ``forkserver`` that imported ``preload`` once (no lock or thread pool of the driver inherited half-way, no
second import of torch), and they:

- take SIGINT as "stop": the run in progress is interrupted and returns what it has (its events up to that
  iteration), and no other starts. Ctrl-C reaches the whole process group; SIGTERM reaches only the driver, which
  then sends SIGINT to its workers itself (workers ignore SIGTERM). The driver records the interrupted runs, writes
  the summary, and kills the workers;
- die with the driver if it is killed outright: Linux's parent-death signal kills each worker when the forkserver
  ends, and the forkserver when the driver ends (:mod:`amsgrad_repro.pool_guard`), so no worker outlives it;
- report a task that raised as a :class:`~amsgrad_repro.runs.TaskFailed` (that run fails, the others go on);
  a worker that died (killed, out of memory) fails the runs it had not returned, with a line saying so.

The pool is the standard library's :class:`concurrent.futures.ProcessPoolExecutor`; on leaving (normally or by a
signal) every worker still alive is killed (:func:`multiprocessing.active_children`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool

from .runs import TaskFailed
from .values import usable_cpus

__all__ = ["NotStarted", "Pool", "report", "shared", "usable_cpus"]

_SHARED: object = None
_PROGRESS = None  # in a worker: the queue progress goes through (None elsewhere: report() does nothing)
_RUNNING = False  # in a worker: a task is running now
_STOPPING = False  # in a worker: the driver asked it to stop


class NotStarted:
    """What a task returns when the driver's stop reached its worker before the task began."""


def shared() -> object:
    """In a worker: the object its pool was built with (``shared=``)."""
    return _SHARED


def report(key: object, n: int) -> None:
    """In a worker: tell the driver that task ``key`` did ``n`` more units of work (iterations). Elsewhere (this
    process, a Ray task) nothing. Cheap enough for every hundred iterations, not for every one."""
    if _PROGRESS is not None:
        _PROGRESS.put((key, n))


def _on_sigint(signum, frame) -> None:
    """A worker's SIGINT (the driver's stop, or Ctrl-C reaching the whole process group): interrupt the task
    running now (a KeyboardInterrupt inside it: it may return what it has), and start no other."""
    global _STOPPING
    _STOPPING = True
    if _RUNNING:
        raise KeyboardInterrupt


def _call(task: Callable, *args):
    """How a worker runs a task: not at all once it has been asked to stop."""
    global _RUNNING
    if _STOPPING:
        return NotStarted()
    _RUNNING = True
    try:
        return task(*args)
    finally:
        _RUNNING = False


def _start_worker(value: object, progress=None) -> None:
    """Each worker's first act: keep ``value`` and the ``progress`` queue, take SIGINT as "stop" and leave SIGTERM
    to the driver, and die with the forkserver (which dies with the driver)."""
    global _SHARED, _PROGRESS
    _SHARED, _PROGRESS = value, progress
    signal.signal(signal.SIGINT, _on_sigint)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:  # PR_SET_PDEATHSIG = 1: SIGKILL this worker when its parent (the forkserver) ends
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
        if os.getppid() == 1:  # the forkserver (and so the driver) ended before the line above: nothing to do
            os._exit(0)


#: seconds the driver waits, after a stop, for the interrupted runs' partial results
STOP_GRACE = 30.0
#: at most this long between two looks at the workers' progress reports
PROGRESS_SECONDS = 0.25


class Pool:
    """``jobs`` worker processes, each holding ``shared``; a context manager (leaving kills what is left)."""

    def __init__(self, jobs: int, shared: object = None, preload: Sequence[str] = ()) -> None:
        self.jobs = jobs
        # forkserver: a clean server process imports ``preload`` once (torch: 1.5 s), then forks each worker from
        # it in milliseconds; no worker inherits the driver's threads, locks or open files half-way (as a plain
        # fork would), and none pays the imports again (as spawn would)
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["amsgrad_repro.pool_guard", *preload])  # the guard first: see its docstring
        self._progress = context.SimpleQueue()  # workers → driver: (key, n), read while the driver waits
        self._executor = concurrent.futures.ProcessPoolExecutor(
            max_workers=jobs, mp_context=context, initializer=_start_worker, initargs=(shared, self._progress)
        )

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Cancel what has not started, kill every worker still alive, and wait for them to be gone."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        for child in multiprocessing.active_children():
            child.kill()
        for child in multiprocessing.active_children():
            child.join(timeout=10)

    def _drain(self, on_progress: Callable[[object, int], None] | None) -> None:
        """Hand every progress report waiting in the queue to ``on_progress``."""
        while not self._progress.empty():
            key, n = self._progress.get()
            if on_progress is not None:
                on_progress(key, n)

    def run(
        self,
        task: Callable,
        jobs: Sequence[tuple[object, tuple]],
        on_progress: Callable[[object, int], None] | None = None,
    ) -> Iterator[tuple[object, object]]:
        """Submit ``task(*args)`` for every ``(key, args)`` and yield ``(key, result)`` as each finishes, with
        ``result`` a :class:`TaskFailed` if the task raised or its worker died. While waiting, every
        :func:`report` a task makes is handed to ``on_progress(key, n)`` (within :data:`PROGRESS_SECONDS`), and
        all of a task's reports before its result.

        Ctrl-C/SIGTERM (a KeyboardInterrupt here): the tasks not started are cancelled, every worker gets SIGINT
        (a running task is interrupted and may return what it has, as a run in this process would), their
        results are yielded as they come (for up to :data:`STOP_GRACE` seconds), then the workers are killed and
        the KeyboardInterrupt propagates."""
        futures = {self._executor.submit(_call, task, *args): key for key, args in jobs}
        pending = set(futures)
        try:
            while pending:
                done, pending = concurrent.futures.wait(
                    pending, timeout=PROGRESS_SECONDS, return_when=concurrent.futures.FIRST_COMPLETED
                )
                self._drain(on_progress)  # a task's reports are queued before its result is sent: all are here
                for future in done:
                    yield futures[future], _outcome(future)
        except KeyboardInterrupt:
            for future in futures:
                future.cancel()
            for child in multiprocessing.active_children():
                with contextlib.suppress(OSError):
                    os.kill(child.pid, signal.SIGINT)
            running = [f for f in futures if not f.cancelled() and not f.done()]
            try:
                for future in concurrent.futures.as_completed(running, timeout=STOP_GRACE):
                    outcome = _outcome(future)
                    if not isinstance(outcome, (NotStarted, TaskFailed)):
                        yield futures[future], outcome
            except (concurrent.futures.TimeoutError, KeyboardInterrupt):
                pass  # a run that does not stop in time (or a second Ctrl-C) is not waited for
            self.close()
            raise
        except BaseException:
            self.close()
            raise


def _outcome(future: concurrent.futures.Future) -> object:
    """A finished task's result, or a :class:`TaskFailed` saying why there is none."""
    try:
        return future.result()
    except BrokenProcessPool:
        return TaskFailed("a worker process died (killed, or out of memory) before the run finished")
    except BaseException as e:  # the task's own error (a KeyboardInterrupt it let through: it had nothing to keep)
        return TaskFailed(f"{type(e).__name__}: {e}".splitlines()[0])
