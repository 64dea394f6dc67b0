"""The second hostile pass (issue 15): huge inputs are refused by arithmetic before anything is built, every
refusal is one line and exit 2 with nothing written, nonsense is refused, and a data file cannot make the
package allocate more than its header declares.

Usage::

    pytest tests/test_hostile.py

The classes and examples are those of docs/runs.md's promises; each case is one of a class (a size counted
before it is materialised, a value that must be finite, a name the staging scheme must hold, ...).
"""

from __future__ import annotations

import gzip
import io
import pickle
import resource
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from amsgrad_repro.cli import main
from amsgrad_repro.realdata.data import DataError, read_cifar_dir, read_idx, read_keras_npz

ROOT = Path(__file__).resolve().parents[1]

#: (argv, a word the one error line must contain)
REFUSED = [
    # sizes counted before anything is materialised
    (["stochastic", "--seed", "0:30000000"], "too many"),
    (["stochastic", "--seed", "0:4611686018427387904"], "too many"),
    (["online", "--lr", "1e-3:1e-1:30000000"], "too many"),
    (["stochastic", "--seed", "0:20000"], "--allow-large"),
    (["mlp", "--seed", "0:2000", "--lr", "1e-3:1e-1:10"], "--allow-large"),
    (["phase", "--beta1", "0", "0.9", "1e9"], "--beta1"),
    (["phase", "--beta1", "0", "0.9", "1e300"], "--beta1"),
    (["phase", "--beta1", "0", "0.9", "1000", "--beta2", "0.5", "0.9", "1001"], "--allow-large"),
    (["bench", "--runs", "4611686018427387904"], "--runs"),
    # names the file system and the staging scheme must hold
    (["online", "--optimizers", "adam,lr=0.001" + "0" * 300], "directory name"),
    (["online", "--run-name", "x" * 250], "--run-name"),
    # non-finite and nonsense values
    (["online", "--optimizers", "torch.optim.SGD,lr=0.1,weight_decay=inf"], "finite"),
    (["online", "--optimizers", "torch.optim.SGD,lr=0.1,momentum=0.5,dampening=nan"], "finite"),
    (["online", "--steps", "-inf"], "--steps"),
    (["online", "--bounds", "-inf", "inf"], "bounds"),
    (["online", "--ray-timeout", "-5"], "--ray-timeout"),
    (["bench", "--ray-tasks", "0"], "--ray-tasks"),
    (["bench", "--skip-synthetic", "--models"], "nothing to time"),
    (["logreg", "--threads", "100000"], "CPU"),
    (["logreg", "--jobs", "100000"], "--jobs 100,000 is more than 4 ×"),
    (["logreg", "--jobs", "0"], "--jobs"),
    (["mlp", "--jobs", "2", "--ray"], "--jobs and --ray"),
    (["bench", "--lane-runs", "200000"], "--lane-runs 200,000 is too many"),
]


@pytest.mark.parametrize(("argv", "says"), REFUSED, ids=[" ".join(a)[:60] for a, _ in REFUSED])
def test_refused_in_one_line_with_nothing_written(tmp_path, capsys, argv, says):
    logdir = tmp_path / "logs"
    extra = [] if argv[0] == "bench" else ["--logdir", str(logdir), "--no-progress"]
    try:
        code = main([*argv, *extra])
    except SystemExit as e:  # argparse errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and len(err) < 400, err
    assert says in err and "Traceback" not in err, err
    assert not logdir.exists()


def test_an_empty_logdir_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["online", "--steps", "10", "--logdir", "", "--no-progress"]) == 2
    assert "--logdir" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_refusal_costs_no_memory_or_time(tmp_path):
    """The huge ranges above are refused before anything is built: measured in a child process whose address
    space is capped at 2 GiB (materialising 4.6e18 seeds, or 30 M step sizes and their message, would not fit)."""
    script = (
        "import resource, sys; from amsgrad_repro.cli import main\n"
        "resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n"
        f"sys.exit(main(['stochastic', '--seed', '0:4611686018427387904', '--logdir', {str(tmp_path)!r}]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 2 and "too many" in proc.stderr and "MemoryError" not in proc.stderr, proc.stderr


def test_an_invocation_whose_every_run_failed_exits_1(tmp_path, capsys, monkeypatch):
    from amsgrad_repro.realdata import engines

    def broken(*args, **kwargs):
        raise RuntimeError("this run cannot train")

    monkeypatch.setattr(engines, "_trial", broken)
    argv = ["mlp", "--iterations", "5", "--logdir", str(tmp_path), "--run-name", "r", "--no-progress", "--jobs", "1"]
    assert main(argv) == 1  # --jobs 1: in this process, where the patch is
    err = capsys.readouterr().err
    assert "every run failed" in err
    assert err.count("this run cannot train") == 2  # each run's error, said once
    assert not (tmp_path / "mlp" / "r").exists()  # no run did anything to keep


def test_ctrl_c_during_the_imports_is_quiet(tmp_path, spawn):
    """SIGINT a moment after start: whether it lands in the imports or in the run, exit 130, no traceback."""
    proc = spawn(
        [sys.executable, "-m", "amsgrad_repro", "online", "--steps", "1000", "--logdir", str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode in (130, 0), err  # 0: it had already finished (a very fast machine)
    assert "Traceback" not in err, err


# --- data files ---------------------------------------------------------------------------------------------


def _idx(dims: tuple[int, ...], payload: bytes = b"") -> bytes:
    return bytes([0, 0, 8, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + payload


def test_an_idx_header_past_int64_is_refused(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(_idx((2**32 - 1, 2**32 - 1, 2**32 - 1)))
    with pytest.raises(DataError, match="too many"):
        read_idx(path)


def test_a_gzip_bomb_is_read_only_as_far_as_its_header_declares(tmp_path):
    """10 images declared, 200 MB of zeros after them (a 200 kB file): refused, and decompressing stops after
    the declared bytes and at most 1 MiB more (the peak memory stays far below the bomb's size)."""
    bomb = io.BytesIO()
    with gzip.GzipFile(fileobj=bomb, mode="wb", compresslevel=9) as f:
        f.write(_idx((10, 28, 28), bytes(10 * 28 * 28)))
        for _ in range(200):
            f.write(bytes(1 << 20))
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(bomb.getvalue())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_idx(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB: not the bomb's 200 MB


def test_an_npz_that_is_really_an_npy_is_refused(tmp_path):
    path = tmp_path / "mnist.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(DataError, match=r"single \.npy array"):
        read_keras_npz("mnist", path)


def test_images_with_no_channels_are_refused(tmp_path):
    path = tmp_path / "mnist.npz"
    x = np.zeros((4, 0, 28, 28), np.uint8)
    np.savez(path, x_train=x, y_train=np.zeros(4, np.uint8), x_test=x, y_test=np.zeros(4, np.uint8))
    with pytest.raises(DataError, match="0 channels"):
        read_keras_npz("mnist", path)


@pytest.mark.parametrize(("labels", "says"), [([[1, 2], [3]], "not a flat list"), (["a"] * 8, "must be integers")])
def test_cifar_batches_with_ragged_or_string_labels_are_refused(tmp_path, labels, says):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    batch = {b"data": np.zeros((8, 3072), np.uint8), b"labels": labels}
    for name in [*(f"data_batch_{k}" for k in range(1, 6)), "test_batch"]:
        (d / name).write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match=says):
        read_cifar_dir(d)


# --- plot: only run directories of this package, and a real file to write --------------------------------


@pytest.fixture(scope="module")
def online_run(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("plot") / "logs"
    assert main(["online", "--steps", "3000", "--logdir", str(logdir), "--run-name", "r", "--no-progress"]) == 0
    return logdir / "online" / "r"


@pytest.mark.parametrize(
    ("summary", "says"),
    [
        ('{"setting": "online", "runs": [1, 2, 3]}', "without a name"),
        ('{"setting": "online", "runs": [{}]}', "without a name"),
        ('{"setting": "bogus", "runs": []}', "no known setting"),
        ('{"setting": "online", "runs": [{"name": "../../etc", "status": "complete"}]}', "outside its directory"),
    ],
)
def test_plot_refuses_a_summary_that_is_not_ours(tmp_path, capsys, summary, says):
    run_dir = tmp_path / "online" / "fake"
    run_dir.mkdir(parents=True)
    (run_dir / "summary.json").write_text(summary)
    assert main(["plot", str(run_dir), "--out", str(tmp_path / "fig")]) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "fig.png").exists()


def test_plot_refuses_folders_that_are_not_run_directories(online_run, tmp_path, capsys):
    for folder in (online_run.parent, online_run / "adam"):  # a setting folder, one run's own folder
        assert main(["plot", str(folder), "--out", str(tmp_path / "fig")]) == 2
        assert "no summary.json" in capsys.readouterr().err
    assert not (tmp_path / "fig.png").exists()


@pytest.mark.parametrize("out", ["", "/dev/null"])
def test_plot_refuses_an_out_that_is_not_a_file_name(online_run, capsys, out):
    assert main(["plot", str(online_run), "--out", out]) == 2
    assert "--out" in capsys.readouterr().err
    assert not Path("/dev/null.png").exists()


def test_plot_keeps_a_dot_in_the_out_name(online_run, tmp_path, capsys):
    assert main(["plot", str(online_run), "--out", str(tmp_path / "lr-0.01")]) == 0
    assert (tmp_path / "lr-0.01.png").is_file() and (tmp_path / "lr-0.01.svg").is_file()
