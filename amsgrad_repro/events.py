"""TensorBoard event files, written synchronously and in bulk with the ``tensorboard`` package's own protos.

Usage::

    from amsgrad_repro.events import EventWriter

    with EventWriter("logs/online/demo/adam") as writer:      # one events.out.tfevents.* file in that directory
        writer.add_scalar("x", 0.5, 1)
        writer.add_scalars("x", [0.4, 0.3], [1000, 2000])       # many points of one tag at once

The file is what TensorBoard's own writer makes (TFRecord framing: length, masked CRC-32C of the length, the
serialized ``Event``, masked CRC-32C of it; the first event names the file version), so TensorBoard, its
``EventAccumulator`` and tensorboardX's readers all read it. What differs from tensorboardX's and tensorboard's
``SummaryWriter`` is *when* bytes reach the disk and *who* sees an error:

- **Synchronous.** Records go into a buffer that this thread writes out when it passes :data:`BUFFER_BYTES`,
  every :data:`FLUSH_SECONDS` seconds, at :meth:`flush` and at :meth:`close`. There is no writer thread, so a
  full disk (ENOSPC), an I/O error (EIO) or a file-size limit (EFBIG) surfaces at once, in the caller, as a
  :class:`~amsgrad_repro.runs.WriteFailed` naming the file; the asynchronous writers' thread died silently
  instead and left the process waiting on its queue for ever, deaf to Ctrl-C and SIGTERM.
- **No torch.** It imports the ``tensorboard`` protos and ``google_crc32c``, not tensorboardX (which imports
  torch), so the fused engine's path can stay free of torch.
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
import time
from collections.abc import Iterable
from pathlib import Path

import google_crc32c
from tensorboard.compat.proto import event_pb2, summary_pb2

from .files import create_new
from .runs import WriteFailed

#: write the buffer out when it holds this many bytes (a scalar record is about 40-50 bytes)
BUFFER_BYTES = 1 << 20
#: ... or when this many seconds have passed since the last write, so TensorBoard sees a long run progress
FLUSH_SECONDS = 10.0

_uid = itertools.count()
_LENGTH = struct.Struct("<Q")
_CRC = struct.Struct("<I")


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C: rotate right by 15 bits, add 0xa282ead8 (mod 2³²)."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def record(data: bytes) -> bytes:
    """One TFRecord: length, masked CRC of the length, the data, masked CRC of the data."""
    length = _LENGTH.pack(len(data))
    return length + _CRC.pack(masked_crc32c(length)) + data + _CRC.pack(masked_crc32c(data))


def scalar_event(tag: str, value: float, step: int, wall_time: float) -> bytes:
    """A serialized ``Event`` holding one scalar (``simple_value``, as TensorBoard's scalar dashboard reads)."""
    summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)])
    return event_pb2.Event(wall_time=wall_time, step=step, summary=summary).SerializeToString()


class EventWriter:
    """One run's event file in ``log_dir`` (created if missing). Not thread-safe: one writer per thread.

    Every method raises :class:`~amsgrad_repro.runs.WriteFailed` (naming the file and the cause) on a write
    error; the file is then closed, and further calls raise the same error instead of writing."""

    def __init__(self, log_dir: str | os.PathLike) -> None:
        self.log_dir = Path(log_dir)
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.{next(_uid)}"
        self.path = self.log_dir / name
        self._buffer = bytearray()
        self._file = None
        self._failed: WriteFailed | None = None
        self._last_write = time.monotonic()
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            # a new file, never one that exists and never through a link (files.create_new); closed by close()
            self._file = os.fdopen(create_new(self.path), "wb", buffering=0)
        except OSError as e:
            raise WriteFailed(self.path, e) from None
        version = event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2")
        self._buffer += record(version.SerializeToString())
        self.flush()

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        """One point of ``tag``: ``value`` at ``step``."""
        self._buffer += record(scalar_event(tag, float(value), int(step), time.time()))
        self._maybe_write()

    def add_scalars(self, tag: str, values: Iterable[float], steps: Iterable[int]) -> None:
        """Many points of one ``tag`` (one wall time for all of them): the fast path for logged arrays."""
        wall = time.time()
        buffer = self._buffer
        for value, step in zip(values, steps, strict=True):
            buffer += record(scalar_event(tag, float(value), int(step), wall))
        self._maybe_write()

    def add_summary(self, summary: summary_pb2.Summary, step: int = 0) -> None:
        """Any ``Summary`` proto (a plugin's: Custom Scalars' layout, HParams' sessions) as one event at ``step``."""
        event = event_pb2.Event(wall_time=time.time(), step=step, summary=summary)
        self._buffer += record(event.SerializeToString())
        self._maybe_write()

    def _maybe_write(self) -> None:
        if len(self._buffer) >= BUFFER_BYTES or time.monotonic() - self._last_write >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write out everything added so far."""
        if self._failed is not None:
            raise self._failed
        if self._file is None:
            raise ValueError(f"{self.path} is closed")
        data = bytes(self._buffer)
        self._buffer.clear()
        try:
            written = 0
            while written < len(data):
                written += self._file.write(data[written:] if written else data)
        except OSError as e:
            self._fail(e)
        self._last_write = time.monotonic()

    def _fail(self, error: OSError) -> None:
        self._failed = WriteFailed(self.path, error)
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass  # the write already failed; this is the same error again
            self._file = None
        raise self._failed from None

    def close(self) -> None:
        """Write out what is left and close the file (idempotent; after a write error it only closes)."""
        if self._file is None:
            return
        try:
            self.flush()
        finally:
            if self._file is not None:
                file, self._file = self._file, None
                try:
                    file.close()
                except OSError as e:
                    raise WriteFailed(self.path, e) from None

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:  # already failing: close, but let the first error be the one that propagates
            try:
                self.close()
            except WriteFailed:
                pass


class ScalarRecord:
    """What a run on a Ray worker writes instead of events: ``add_scalar`` keeps (tag, value, step) in memory,
    and the driver replays :attr:`scalars` into a real writer (:meth:`replay`), so the events are the same."""

    def __init__(self) -> None:
        self.scalars: list[tuple[str, float, int]] = []

    def add_scalar(self, tag: str, value: float, global_step: int) -> None:
        self.scalars.append((tag, float(value), int(global_step)))

    @staticmethod
    def replay(scalars: list[tuple[str, float, int]], log_dir: str) -> None:
        """Write ``scalars`` as one run's TensorBoard events in ``log_dir`` (the loggers' :class:`EventWriter`).
        Raises :class:`~amsgrad_repro.runs.WriteFailed` on a write error."""
        with EventWriter(log_dir) as writer:
            for tag, value, step in scalars:
                writer.add_scalar(tag, value, step)
