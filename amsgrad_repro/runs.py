"""The run spine every command stands on: who owns a run directory, what stops a run, what the summary says.
(What the user reads at the end, the tables and endings, is :mod:`.report`; event files are :mod:`.events`.)

Usage::

    from amsgrad_repro.runs import Ledger, RunDir, Stopping, write_summary
    from amsgrad_repro.signals import handle_signals

    with handle_signals():                                   # SIGINT and SIGTERM become KeyboardInterrupt
        run_dir = RunDir.claim(Path("logs/online"), "demo", overwrite=False, logdir="logs")
        ledger = Ledger([{"name": "adam"}, {"name": "amsgrad"}])   # every planned run, "not started"
        with Stopping(ledger, run_dir) as stop:              # a signal or a lost backend: running → interrupted
            for name in ledger.names:
                ledger.update(name, "running")
                ...                                          # write events under run_dir.path / name
                ledger.update(name, "complete", final_x=...)
        summary = {"runs": ledger.rows(), **ledger.outcome()}
        final, kept = stop.finish(summary, keep=ledger.has_results())   # summary.json, then release the directory
        stop.raise_error()                                   # a lost backend or a write error: exit 1

It knows nothing of problems, optimizers or data sets: it handles "a run" (a name, a status, the numbers it
logged) and "a run directory". The rules it enforces:

- **A run directory belongs to one live process.** :meth:`RunDir.claim` takes an exclusive ``flock`` on
  ``<dir>/.lock``; the kernel drops it when the process dies, however it dies, so a stale lock never blocks a name.
  A second process asked to overwrite a directory that is still locked refuses, naming the owner's pid.
- **Nothing is replaced before its replacement has something to keep.** With ``overwrite`` the new run is
  written into a hidden sibling ``.<name>.new-<pid>``; only :meth:`RunDir.release` with ``keep=True`` swaps it
  in (old → ``.<name>.old-<pid>``, new → ``<name>``, then the old is deleted). A run that fails or is stopped
  before it has anything to keep is discarded and the old run is untouched.
- **SIGTERM is Ctrl-C** (:mod:`.signals`): both raise ``KeyboardInterrupt``; :class:`Stopping` marks the running
  runs interrupted, writes the summary and names the signal.
- **A write error ends the invocation.** :class:`WriteFailed` (raised by the event writer and
  :func:`write_summary`) stops the runs like a signal, keeps what was complete if its summary still fits, and
  never lets the broken new run replace an old one.
- **Every planned run appears in the summary with its status** (:data:`STATUSES`), and summary.json is strict
  JSON: a non-finite number is written as ``null``, never as ``NaN``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from .files import NotAFile, create_new, open_regular, read_regular, write_atomic
from .signals import defer_signals, signal_name, stopped_by

#: a run's status in summary.json
STATUSES = ("not started", "running", "complete", "interrupted", "failed")


class UsageError(ValueError):
    """Bad input from the user: the CLI prints the message on one line and exits with status 2."""


@dataclasses.dataclass(frozen=True)
class TaskFailed:
    """A run's task that raised, on Ray (after its retries, if its worker died) or in a ``--jobs`` worker: the
    error, as one line. The run is ``failed`` with it; the others go on."""

    error: str


class BackendLost(RuntimeError):
    """The backend running the runs (a Ray cluster) is gone: what finished is kept, the rest cannot run (exit 1)."""


class WriteFailed(RuntimeError):
    """A write to disk failed: a full disk (ENOSPC), an I/O error (EIO), a file too large (EFBIG), … The
    invocation ends at once (exit 1) with one line naming the file and the cause; :class:`Stopping` keeps what
    was complete if its summary still fits, and never replaces an old run with the broken new one."""

    def __init__(self, path: object, error: OSError) -> None:
        super().__init__(f"cannot write {path}: {error.strerror or error}")
        self.path, self.errno = path, error.errno


@contextlib.contextmanager
def writing(path: object) -> Iterator[None]:
    """Within the block an OSError becomes a :class:`WriteFailed` naming ``path`` (the file being written)."""
    try:
        yield
    except OSError as e:
        raise WriteFailed(path, e) from None


class Stopping:
    """``with Stopping(ledger, run_dir) as stop:`` around an invocation's runs, then :meth:`finish`.

    A signal (KeyboardInterrupt), a :class:`BackendLost` or a :class:`WriteFailed` ends the block with the ledger
    stopped (running → interrupted; after a write error, the run being written → failed), so the caller can write
    the summary of what finished; the lost backend or the write error is kept in :attr:`error`, and
    :meth:`raise_error` raises it once the summary is written and the ending printed. Anything else releases the
    run directory unkept (the old run, if one is being replaced, stays) and propagates."""

    def __init__(self, ledger: Ledger, run_dir: RunDir) -> None:
        self.ledger, self.run_dir = ledger, run_dir
        self.error: BackendLost | WriteFailed | None = None
        self._held: defer_signals | None = None

    def __enter__(self) -> Stopping:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        # From the end of the runs until finish() has written the summary, a signal (a second Ctrl-C, a SIGTERM
        # right after the first) only waits: it cannot leave a run directory without its summary.
        self._held = defer_signals().__enter__()
        if exc_type is None:
            return False
        if issubclass(exc_type, WriteFailed):
            self.ledger.fail_running(str(exc))
            self.error = exc
            return True
        if issubclass(exc_type, (KeyboardInterrupt, BackendLost)):
            self.ledger.stop()
            self.error = exc if isinstance(exc, BackendLost) else None
            return True
        self._let_go()
        self.run_dir.release(keep=False)  # a failure before anything ran (or a bug)
        return False

    def _let_go(self) -> None:
        if self._held is not None:
            self._held.__exit__(None, None, None)
            self._held = None

    def finish(self, summary: dict, keep: bool, records: Callable[[], None] | None = None) -> tuple[Path, bool]:
        """Write ``records()`` (the runs' other last files: TensorBoard's HParams sessions) and ``summary``, if
        ``keep`` (some run has something to keep), then release the run directory; signals wait meanwhile.
        Returns where the run is and whether it was kept. After a write error the new run replaces no old one
        (the staging directory is removed, the old run stays as it was), and a summary that cannot be written
        either means nothing is kept: a directory without its summary would only block the name."""
        try:
            return self._finish(summary, keep, records)
        finally:
            self._let_go()

    def _finish(self, summary: dict, keep: bool, records: Callable[[], None] | None) -> tuple[Path, bool]:
        with defer_signals():
            if keep and records is not None:
                try:
                    records()
                except WriteFailed as e:
                    self.error = self.error or e
            if isinstance(self.error, WriteFailed):
                summary["error"] = str(self.error)
                keep = keep and not self.run_dir.replacing
            if keep:
                try:
                    write_summary(self.run_dir.path, summary)
                except WriteFailed as e:
                    keep, self.error = False, self.error or e
            return self.run_dir.release(keep=keep), keep

    def raise_error(self) -> None:
        """After the summary and the ending are printed: raise what stopped the runs early, if anything did
        (a lost backend, a write error: both exit 1), so the caller says why the rest did not run."""
        if self.error is not None:
            raise self.error


# --- run directories ---------------------------------------------------------------------------------------


def _lock(directory: Path, new: bool = True) -> int | None:
    """An exclusive flock on ``directory/.lock``, or None if another live process holds it.

    ``new``: a directory this process has just made; the lock file is created (never opened through a link:
    :func:`~amsgrad_repro.files.create_new`) and holds our pid. Otherwise it is an old run's directory being
    taken over: its ``.lock`` is only locked, never written, and it must be a regular file, not a link (a link
    there is refused: a :class:`UsageError`)."""
    path = directory / ".lock"
    if new:
        fd = create_new(path)
    else:
        try:
            with open_regular(path, limit=1 << 10, follow=False) as f:
                fd = os.dup(f.fileno())
        except FileNotFoundError:  # a run directory without a lock file (an older version's): make one
            fd = create_new(path)
        except NotAFile as e:
            raise UsageError(f"{e}: {directory} is not a run directory this package can take over") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    if new:
        os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _owner(directory: Path) -> str:
    try:
        return read_regular(directory / ".lock", limit=64, follow=False).decode(errors="replace").strip() or "?"
    except (OSError, NotAFile):
        return "?"


#: bytes a run name may have: 255 (a file name) less what the staging names add, ``.<name>.new-<pid>``
MAX_NAME_BYTES = 255 - len(".") - len(".new-") - 7  # pids have at most 7 digits (pid_max ≤ 2^22)


def _check_name(name: str) -> None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # bytes from a non-UTF-8 shell, decoded by Python as lone surrogates
        raise UsageError(
            f"--run-name must be valid UTF-8 (it names the run in TensorBoard and in summary.json), got {name[:60]!a}"
        ) from None
    if (
        not name
        or name in (".", "..")
        or name.startswith(".")
        or "/" in name
        or "\0" in name
        or len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES
    ):
        raise UsageError(
            f"--run-name must be a plain directory name (no '/', not starting with '.', at most {MAX_NAME_BYTES} "
            f"bytes), got {name[:60]!r}{'…' if len(name) > 60 else ''}"
        )


def check_run_names(names: Iterable[str]) -> None:
    """Every level of every run's path (``adam,lr=0.1/seed=3``) is a legal directory name: a UsageError before
    anything is written, instead of ENAMETOOLONG in the middle of an invocation."""
    for name in names:
        for part in name.split("/"):
            if len(part.encode("utf-8", "surrogateescape")) > 255:
                size = len(part.encode("utf-8", "surrogateescape"))
                raise UsageError(f"a run's directory name would be {size:,} bytes (at most 255): {part[:60]}…")


class RunDir:
    """A run directory owned by this process until :meth:`release` (see the module docstring).

    Attributes:
        final: where the run lives once released, ``<base>/<name>``; what the summary and messages name.
        path: where to write now: ``final``, or the hidden staging sibling while replacing an old run.
        replacing: whether an old run of that name is waiting to be replaced.
    """

    def __init__(self, final: Path, path: Path, locks: list[int], created: list[Path]) -> None:
        # created: the parent directories claim() made (removed again, if empty, when nothing is kept)
        self.final, self.path = final, path
        self.replacing = path != final
        self._locks, self._created = locks, created
        self._released = False

    @classmethod
    def claim(cls, base: Path, run_name: str | None, overwrite: bool, logdir: str) -> RunDir:
        """Create and lock ``base/<run-name>``. A default (timestamp) name gets a ``-2``, ``-3``… suffix when
        taken; an explicit name that exists is a :class:`UsageError` unless ``overwrite``, and even then
        refused while another process holds it. Everything this creates is removed again on a UsageError.
        Signals wait meanwhile: a Ctrl-C cannot leave a directory made but not locked."""
        with defer_signals() as held:
            run_dir = cls._claim(base, run_name, overwrite, logdir)
            if held.hit:  # stopped before anything ran: nothing to keep, the name stays free
                run_dir.release(keep=False)
        held.raise_if_hit()
        return run_dir

    @classmethod
    def _claim(cls, base: Path, run_name: str | None, overwrite: bool, logdir: str) -> RunDir:
        if not logdir:
            raise UsageError("--logdir must name a directory (it is empty)")
        if run_name is not None:
            _check_name(run_name)
        created: list[Path] = []
        try:
            missing = [p for p in [base, *base.parents] if not p.exists()]
            for p in reversed(missing):
                p.mkdir()
                created.append(p)
        except OSError as e:
            _remove_created(created)
            raise UsageError(f"cannot write to --logdir {logdir}: {e.strerror or e}") from None
        try:
            if run_name is None:
                final = cls._fresh_timestamp(base)
                return cls(final, final, [cls._lock_new(final)], created)
            final = base / run_name
            try:
                final.mkdir()
                return cls(final, final, [cls._lock_new(final)], created)
            except FileExistsError:
                pass
            if not overwrite:
                raise UsageError(f"run directory {final} already exists: pick another --run-name or pass --overwrite")
            if final.is_symlink() or not final.is_dir():
                raise UsageError(f"{final} exists and is not a run directory: remove it or pick another --run-name")
            old_lock = _lock(final, new=False)
            if old_lock is None:
                raise UsageError(
                    f"run directory {final} is being written by another process (pid {_owner(final)}): "
                    "wait for it to finish or pick another --run-name"
                )
            staging = base / f".{run_name}.new-{os.getpid()}"
            try:
                staging.mkdir()
                return cls(final, staging, [old_lock, cls._lock_new(staging)], created)
            except BaseException:
                os.close(old_lock)
                raise
        except UsageError:
            _remove_created(created)
            raise
        except OSError as e:
            _remove_created(created)
            if e.errno in (errno.ENAMETOOLONG, errno.EINVAL, errno.EILSEQ):
                raise UsageError(f"--run-name {run_name!r} is not a valid directory name here: {e.strerror}") from None
            raise UsageError(f"cannot write to --logdir {logdir}: {e.strerror or e}") from None

    @staticmethod
    def _fresh_timestamp(base: Path) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for k in range(1, 10_000):
            candidate = base / (stamp if k == 1 else f"{stamp}-{k}")
            try:
                candidate.mkdir()
                return candidate
            except FileExistsError:
                continue
        raise UsageError(f"no free run name under {base} for {stamp}")

    @staticmethod
    def _lock_new(directory: Path) -> int:
        """Lock a directory this process has just made; on failure remove it again."""
        try:
            fd = _lock(directory)
            if fd is None:  # nobody else can know of it yet
                raise OSError(errno.EBUSY, f"{directory} is locked")
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        return fd

    def release(self, keep: bool) -> Path:
        """End ownership. ``keep``: the run has something to keep, so it stays (and replaces the old run, if
        any). Not ``keep``: what this process created is removed and an old run is left as it was. Signals are
        held off meanwhile, so a second Ctrl-C cannot leave a half-swapped directory. Returns where the run is."""
        if self._released:
            return self.final
        with defer_signals():
            try:
                if keep and self.replacing:
                    old = self.final.with_name(f".{self.final.name}.old-{os.getpid()}")
                    os.rename(self.final, old)
                    os.rename(self.path, self.final)
                    shutil.rmtree(old, ignore_errors=True)
                elif not keep:
                    shutil.rmtree(self.path, ignore_errors=True)
                    _remove_created(self._created)
            finally:
                for fd in self._locks:
                    os.close(fd)
                self._released = True
        return self.final


def _remove_created(created: list[Path]) -> None:
    """Remove the parent directories a claim created, deepest first, each only while it is empty."""
    for p in reversed(created):
        with contextlib.suppress(OSError):
            p.rmdir()


# --- the ledger of runs and the summary --------------------------------------------------------------------


class Ledger:
    """Every planned run of an invocation with its status, in plan order.

    Each planned row is a dict with at least ``name``; it starts as ``"not started"``. Wings add their own
    fields (the numbers a run logged) through :meth:`update`.
    """

    def __init__(self, planned: Iterable[dict]) -> None:
        self._rows: dict[str, dict] = {}
        for row in planned:
            if row["name"] in self._rows:
                raise ValueError(f"two planned runs are named {row['name']!r}")
            self._rows[row["name"]] = {**row, "status": "not started"}

    @property
    def names(self) -> list[str]:
        return list(self._rows)

    def update(self, name: str, status: str | None = None, **fields: object) -> None:
        row = self._rows[name]
        if status is not None:
            if status not in STATUSES:
                raise ValueError(f"unknown status {status!r}")
            row["status"] = status
        row.update(fields)

    def stop(self) -> None:
        """A signal stopped the invocation: every run still running is interrupted."""
        for row in self._rows.values():
            if row["status"] == "running":
                row["status"] = "interrupted"

    def fail_running(self, error: str) -> None:
        """A write error stopped the invocation: every run still running failed with ``error``."""
        for row in self._rows.values():
            if row["status"] == "running":
                row.update(status="failed", error=error)

    def rows(self) -> list[dict]:
        return [dict(row) for row in self._rows.values()]

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATUSES, 0)
        for row in self._rows.values():
            out[row["status"]] += 1
        return {k: v for k, v in out.items() if v}

    def has_results(self) -> bool:
        """Whether any run got far enough to have something to keep."""
        return any(row["status"] in ("complete", "interrupted", "failed") for row in self._rows.values())

    def outcome(self) -> dict:
        """The invocation-level fields of a summary: ``status``, ``interrupted``, ``stopped_by``, counts."""
        counts = self.counts()
        stopped = any(s in counts for s in ("interrupted", "not started", "running"))
        status = "interrupted" if stopped else ("failed" if "failed" in counts else "complete")
        return {
            "status": status,
            "interrupted": stopped,
            "stopped_by": signal_name(stopped_by()) if stopped else None,
            "runs_by_status": counts,
        }


def strict(value: object) -> object:
    """``value`` with every non-finite float replaced by None and tuples by lists: what strict JSON can hold."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return strict(value.item())
    return value


def write_summary(run_dir: Path, summary: dict, name: str = "summary.json") -> Path:
    """Write ``summary`` as strict JSON, atomically and never through a link (a new temporary file renamed into
    place: :func:`~amsgrad_repro.files.write_atomic`). Raises :class:`WriteFailed` (and leaves no temporary
    file) if the disk refuses it."""
    path = run_dir / name
    text = json.dumps(strict(summary), indent=2, allow_nan=False) + "\n"
    try:
        write_atomic(path, text.encode())
    except OSError as e:
        raise WriteFailed(path, e) from None
    return path
