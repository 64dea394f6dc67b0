"""The third hostile pass (issue 29), class 3: a data file is checked against what it declares, and against the
documented limits, before anything is allocated; and a good file written by today's pickle is read.

Usage::

    pytest tests/test_forged_data.py

Memory is measured as the growth of this process's peak RSS (``ru_maxrss``), which only ever rises: a refusal
that allocated what the file declares would show it.
"""

from __future__ import annotations

import io
import os
import pickle
import resource
import zipfile

import numpy as np
import pytest

from amsgrad_repro.cli import main
from amsgrad_repro.realdata import data as data_mod
from amsgrad_repro.realdata.data import DataError, load, read_cifar_dir, read_idx, read_keras_npz

ARRAYS = {
    "x_train": np.arange(4 * 28 * 28, dtype=np.uint8).reshape(4, 28, 28),
    "y_train": np.array([0, 1, 2, 3], np.uint8),
    "x_test": np.zeros((2, 28, 28), np.uint8),
    "y_test": np.array([4, 5], np.uint8),
}


def _peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _npy_header(shape: tuple, dtype: str = "|u1") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def test_a_good_npz_is_read_as_numpy_reads_it(tmp_path):
    np.savez_compressed(tmp_path / "mnist.npz", **ARRAYS)
    got = read_keras_npz("mnist", tmp_path / "mnist.npz")
    assert np.array_equal(got.x_train[:, 0], ARRAYS["x_train"]) and got.y_test.tolist() == [4, 5]


@pytest.mark.parametrize("shape", [(1 << 40,), (60000, 1 << 30, 28)], ids=["1 TiB", "overflowing int64"])
def test_an_npz_member_declaring_too_much_is_refused_before_allocating(tmp_path, shape):
    path = tmp_path / "mnist.npz"
    with zipfile.ZipFile(path, "w") as z:
        for key, value in ARRAYS.items():
            buf = io.BytesIO()
            np.save(buf, value)
            z.writestr(f"{key}.npy", _npy_header(shape) + b"\0" * 64 if key == "x_train" else buf.getvalue())
    before = _peak_kib()
    with pytest.raises(DataError, match="declares"):
        read_keras_npz("mnist", path)
    assert _peak_kib() - before < 50_000  # KiB


def test_a_zip_bomb_in_an_npz_is_refused_by_its_declared_size(tmp_path):
    path = tmp_path / "mnist.npz"
    size = 300 << 20  # 300 MiB of zeros (over the 256 MiB a data file may have), a few hundred KB compressed
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        with z.open("x_train.npy", "w", force_zip64=True) as member:
            member.write(_npy_header((size // 784, 28, 28)))
            chunk = bytes(1 << 20)
            for _ in range(size >> 20):
                member.write(chunk)
    assert path.stat().st_size < 5 << 20
    before = _peak_kib()
    with pytest.raises(DataError, match="declares"):
        read_keras_npz("mnist", path)
    assert _peak_kib() - before < 50_000


def test_a_cifar_pickle_of_nested_lists_is_refused_by_counting_its_opcodes(tmp_path):
    raw = pickle.dumps({b"data": [[] for _ in range(1_100_000)], b"labels": []}, protocol=2)
    assert len(raw) < 10 << 20  # small on disk, ~100 MB of lists in memory, and 3.4 GB at a larger size
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    for name in [*(f"data_batch_{k}" for k in range(1, 6)), "test_batch"]:
        (d / name).write_bytes(raw)
    before = _peak_kib()
    with pytest.raises(DataError, match="pickle opcodes"):
        read_cifar_dir(d)
    assert _peak_kib() - before < 50_000


def test_a_forged_array_shape_in_a_cifar_pickle_allocates_nothing(tmp_path):
    class Forged:  # pickles as numpy's _reconstruct(ndarray, (2**40,), uint8), the way protocol 2 makes an array
        def __reduce__(self):
            return (np.core.multiarray._reconstruct, (np.ndarray, (1 << 40,), np.dtype(np.uint8)))

    raw = pickle.dumps({b"data": Forged(), b"labels": [0]}, protocol=2)
    with pytest.raises(DataError, match="larger than a data file"):
        data_mod._cifar_batch(raw, "forged")


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_a_cifar_batch_of_any_pickle_protocol_is_read(tmp_path, protocol):
    rng = np.random.default_rng(protocol)
    batch = {b"data": rng.integers(0, 256, (6, 3072), dtype=np.uint8), b"labels": rng.integers(0, 10, 6).tolist()}
    images, labels, _ = data_mod._cifar_batch(pickle.dumps(batch, protocol=protocol), "batch")
    assert np.array_equal(images.reshape(6, 3072), batch[b"data"]) and labels.tolist() == batch[b"labels"]


@pytest.mark.parametrize("kind", ["idx", "cifar"])
def test_a_sparse_5_gib_data_file_is_refused_before_it_is_read(tmp_path, kind):
    path = tmp_path / ("data_batch_1" if kind == "idx" else "test_batch")
    with open(path, "wb") as f:
        f.truncate(5 << 30)
    before = _peak_kib()
    with pytest.raises(DataError, match="5,368,709,120 bytes"):
        read_idx(path) if kind == "idx" else data_mod._read_bytes(path)
    assert _peak_kib() - before < 50_000


def test_a_fifo_among_the_data_files_is_refused_not_waited_on(tmp_path):
    os.mkfifo(tmp_path / "train-images-idx3-ubyte")
    with pytest.raises(DataError, match="FIFO"):
        read_idx(tmp_path / "train-images-idx3-ubyte")


def test_a_data_dir_that_cannot_be_read_is_one_line(tmp_path, monkeypatch, capsys):
    argv = ["logreg", "--iterations", "2", "--logdir", str(tmp_path / "logs"), "--data-dir"]
    assert main([*argv, "x" * 100_000]) == 2  # ENAMETOOLONG
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and len(err.strip()) <= 300 and "File name too long" in err

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path))

    monkeypatch.setattr(data_mod, "_find", denied)  # as root nothing is denied: the refusal is what is tested
    with pytest.raises(DataError, match="Permission denied"):
        load("mnist", tmp_path)
    assert not (tmp_path / "logs").exists()
