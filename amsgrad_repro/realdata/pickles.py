"""CIFAR-10's python batches, read without running code: a pickle whose globals are limited to what a numpy
array needs, whose opcodes are counted before anything is built, and whose arrays are sized before they are
allocated. Bytes in, arrays out; where the bytes come from is :mod:`.data`'s business.

Usage::

    from amsgrad_repro.realdata.pickles import BatchError, cifar_batch

    images, labels, first_name = cifar_batch(raw, "data_batch_1", max_bytes=1 << 28)   # (n, 3, 32, 32) uint8
"""

from __future__ import annotations

import functools
import io
import math
import pickle
from typing import BinaryIO

import numpy as np


class BatchError(ValueError):
    """Bytes that are not a CIFAR-10 batch; the message says where and why."""


def _reconstruct(max_bytes: int, subtype, shape, dtype):
    """numpy's ``_reconstruct`` (how a pickle of protocol 2 to 4 makes an empty array before filling it), with the
    shape checked first: numpy writes ``(0,)`` there, and a forged shape must not allocate."""
    try:
        size = math.prod(int(d) for d in shape) * np.dtype(dtype).itemsize
    except (TypeError, ValueError):
        raise pickle.UnpicklingError(f"not an array's shape and dtype: {str(shape)[:40]}, {str(dtype)[:40]}") from None
    if size > max_bytes:
        raise pickle.UnpicklingError(f"an array of shape {str(shape)[:40]} is larger than a data file may hold")
    return np.ndarray.__new__(subtype, shape, dtype)


class _BatchUnpickler(pickle.Unpickler):
    """Resolves only what a pickled numpy array needs; any other global is refused (no code runs)."""

    ALLOWED = frozenset(
        {
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),  # how Python 3 writes bytes into a protocol-2 pickle: str → bytes, nothing more
            # protocol 5 (pickle.dump's default from Python 3.14): an array is _frombuffer(its bytes, dtype, shape,
            # order), a view of bytes the pickle holds, so it allocates nothing
            ("numpy.core.numeric", "_frombuffer"),
            ("numpy._core.numeric", "_frombuffer"),
        }
    )
    RECONSTRUCT = frozenset({("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")})

    def __init__(self, file: BinaryIO, max_bytes: int, **kwargs) -> None:
        super().__init__(file, **kwargs)
        self.max_bytes = max_bytes

    def find_class(self, module: str, name: str):
        if (module, name) in self.RECONSTRUCT:
            return functools.partial(_reconstruct, self.max_bytes)
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


#: the most pickle opcodes a CIFAR-10 batch may hold: a real one has ~30,000 (3 per image: its label, its file
#: name); each opcode can make one Python object (an empty list is 56 bytes from 1 byte of pickle), so this bounds
#: what unpickling can allocate beside the file's own bytes (~100 MB), where a file of nested lists reached 3.4 GB
MAX_PICKLE_OPS = 1_000_000


def _count_ops(raw: bytes, where: str) -> None:
    """Refuse a pickle of more than :data:`MAX_PICKLE_OPS` opcodes, counted without building anything."""
    import pickletools

    try:
        for n, _ in enumerate(pickletools.genops(raw)):
            if n >= MAX_PICKLE_OPS:
                raise BatchError(f"{where} holds more than {MAX_PICKLE_OPS:,} pickle opcodes: not a CIFAR-10 batch")
    except (ValueError, EOFError) as e:  # genops' own complaint about a damaged stream
        raise BatchError(f"{where} is not a CIFAR-10 batch (not a whole pickle: {e})") from None


def cifar_batch(raw: bytes, where: str, max_bytes: int) -> tuple[np.ndarray, np.ndarray, str]:
    """One CIFAR-10 batch dict → (images uint8 (n, 3, 32, 32), labels, its first filename or ""). Any pickle
    protocol (2 to 5) is read; its opcodes are counted before anything is built (:data:`MAX_PICKLE_OPS`), and no
    array it declares may be larger than ``max_bytes``. ``where`` names it in a :class:`BatchError`."""
    _count_ops(raw, where)
    try:
        batch = _BatchUnpickler(io.BytesIO(raw), max_bytes, encoding="bytes").load()
    except Exception as e:  # any unpickling failure is a corrupt or foreign file
        raise BatchError(f"{where} is not a CIFAR-10 batch ({type(e).__name__}: {e})") from None
    if not isinstance(batch, dict):
        raise BatchError(f"{where} is not a CIFAR-10 batch (a {type(batch).__name__}, not a dict)")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        found = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise BatchError(f"{where}: 'data' must be uint8 of shape (n, 3072), found {found}")
    try:
        labels = np.asarray(labels)
    except (ValueError, TypeError):
        raise BatchError(f"{where}: 'labels' is not a flat list of integers") from None
    if not np.issubdtype(labels.dtype, np.integer):
        raise BatchError(f"{where}: 'labels' must be integers, found {labels.dtype}")
    if labels.shape != (len(data),):
        raise BatchError(f"{where}: {len(data)} images but {labels.size} labels")
    names = batch.get("filenames")
    first = names[0] if isinstance(names, list) and names and isinstance(names[0], (bytes, str)) else b""
    first = first.decode("utf-8", "replace") if isinstance(first, bytes) else first
    return data.reshape(-1, 3, 32, 32), labels, first
