"""How the package touches files: never writing through a link, never waiting on something that is not a file.

Usage::

    from amsgrad_repro.files import NotAFile, atomic_file, create_new, open_regular, read_regular, write_atomic

    text = read_regular(path, limit=1 << 20).decode()    # a regular file of at most 1 MiB, or NotAFile
    with open_regular(path, limit=1 << 28) as f: ...     # the same, as an open binary file
    write_atomic(dir / "summary.json", data)             # whole or not at all, replacing (never following) a link
    with atomic_file(dir / "phase.csv", "w", newline="") as f: ...   # the same, written as a stream
    fd = create_new(dir / "events.out.tfevents...")      # a new file; an existing name or a link is an error

The rules, and why (docs/runs.md, "Files"):

- **Nothing is written through a link it did not make.** A run directory can hold what someone else put there
  (``--overwrite`` takes over an old one; anyone who can write to ``--logdir`` can plant a name). So every file
  the package writes is either created new (``O_CREAT | O_EXCL | O_NOFOLLOW``: a name that exists, a symbolic
  link among them, is an error, never opened) or written to such a new temporary sibling and then renamed over
  the name it replaces. ``rename`` replaces a link at the destination; it never writes through it. A hard link
  gains nothing either: the rename gives the name a new inode, and the linked file is never opened.
- **Nothing waits on something that is not a file.** Every file the package reads and did not just write (a data
  set, a summary.json, an event file, another process's lock) is opened without blocking (``O_NONBLOCK``: a FIFO
  without a writer would block ``open`` for ever), checked to be a regular file with ``fstat`` (so a FIFO, a
  socket or a device is refused in one line), and checked against a size limit before a byte is read, so a forged
  or sparse 5 GiB file is refused instead of filling memory. Reading follows links: a data set or a run directory
  that is a link is the user's own arrangement, and reading through it writes nothing.

:class:`NotAFile` is a ``ValueError`` carrying a one-line message; each caller turns it into its own refusal
(:class:`~amsgrad_repro.runs.UsageError`, the data loaders' ``DataError``). An ``OSError`` from the system
(permission denied, a missing file, a full disk) is raised as it is, for the caller to name.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, BinaryIO

_tmp_ids = itertools.count()


class NotAFile(ValueError):
    """A path that is not a regular file (a FIFO, a socket, a device, a directory) or that is larger than the
    limit the caller set; the message is one line naming it."""


def _what(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):  # fmt: skip
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: str | os.PathLike, limit: int, follow: bool = True) -> BinaryIO:
    """``path`` opened for reading in binary, once it is known to be a regular file of at most ``limit`` bytes.

    The open itself cannot block (``O_NONBLOCK``, cleared again once the file is known to be regular).
    ``follow=False`` refuses a symbolic link at ``path`` itself (``O_NOFOLLOW``). Raises :class:`NotAFile` for
    anything else, and ``OSError`` for what the system refuses."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if not follow and e.errno == 40:  # ELOOP: O_NOFOLLOW met a symbolic link
            raise NotAFile(f"{path} is a symbolic link (not followed here)") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotAFile(f"{path} is {_what(info.st_mode)}, not a regular file")
        if info.st_size > limit:
            raise NotAFile(f"{path} has {info.st_size:,} bytes, more than the {limit:,} such a file may have")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | os.PathLike, limit: int, follow: bool = True) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (see :func:`open_regular`). A file that grows
    past ``limit`` while it is read is refused too: no more than ``limit + 1`` bytes are ever read."""
    with open_regular(path, limit, follow) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise NotAFile(f"{path} has more than the {limit:,} bytes such a file may have")
    return data


def create_new(path: str | os.PathLike, mode: int = 0o644) -> int:
    """A file descriptor, open for writing, of a file this call created: if ``path`` exists in any form (a
    file, a link, dangling or not, a FIFO) this raises ``FileExistsError`` and nothing is opened."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb", **kwargs) -> Iterator[IO]:
    """``with atomic_file(path) as f:`` write ``path`` whole or not at all, never through a link. ``f`` is a new
    temporary sibling (:func:`create_new`; ``mode`` and ``kwargs`` as :func:`open` takes them, ``"w"`` or
    ``"wb"``); when the block ends without an error it is renamed over ``path``, replacing whatever name was
    there (a link is replaced, not followed; a directory there is an error). On any error the temporary file is
    removed and the error raised: ``path`` is then as it was (a full disk leaves no empty or cut file)."""
    path = Path(path)
    for attempt in range(100):  # a name someone planted is skipped (never opened), not fatal
        tmp = path.with_name(f".{path.name[:180]}.{os.getpid()}.{next(_tmp_ids)}.tmp")
        try:
            fd = create_new(tmp)
            break
        except FileExistsError:
            if attempt == 99:
                raise
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all, never through a link (:func:`atomic_file`)."""
    with atomic_file(path) as f:
        f.write(data)
