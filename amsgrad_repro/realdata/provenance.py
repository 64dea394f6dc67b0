"""Which files a real-data run read, told from the files themselves, so that a run records and prints the truth
whatever ``--data`` said (``--data mnist`` pointed at Fashion-MNIST's files trains on Fashion-MNIST, and must
say so).

Usage::

    from amsgrad_repro.realdata.provenance import identify_idx, identify_cifar
    found = identify_idx("mnist", y_train, y_test)    # Provenance(name="fashion-mnist", files="Fashion-MNIST", …)

How each set is told:

- **MNIST and Fashion-MNIST** share file names, formats and shapes; their label orders differ from the first
  label on. The first ten training and test labels are a fingerprint that survives re-compression (Debian's
  ``dataset-fashion-mnist`` re-gzips the files, so the published md5s of the ``.gz`` files do not match):
  MNIST ``5 0 4 1 9 2 1 3 1 4`` / ``7 2 1 0 4 1 4 9 5 9``, Fashion-MNIST ``9 0 0 3 0 2 7 2 5 5`` /
  ``9 2 1 1 6 1 4 6 5 7``. Files with neither order keep the name ``--data`` gave, recorded as unrecognised.
- **CIFAR-10**: the md5 of each python batch against the published ones (torchvision's list, the same files as
  ``cifar-10-python.tar.gz``). Batches that differ and whose ``filenames`` are JPEG paths are a copy rebuilt from
  lossy JPEG images (such as this project's ``../shared/data/cifar10``): recorded as such, never as CIFAR-10.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: (first ten training labels, first ten test labels) of the official files
MNIST_HEADS = ((5, 0, 4, 1, 9, 2, 1, 3, 1, 4), (7, 2, 1, 0, 4, 1, 4, 9, 5, 9))
FASHION_MNIST_HEADS = ((9, 0, 0, 3, 0, 2, 7, 2, 5, 5), (9, 2, 1, 1, 6, 1, 4, 6, 5, 7))
#: the published md5 of each official CIFAR-10 python batch
CIFAR10_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}


@dataclass(frozen=True)
class Provenance:
    """``name``: the data set the files are (what the run is titled with); ``files``: a short label for
    headers and figure titles; ``detail``: one sentence saying how that was told."""

    name: str
    files: str
    detail: str


def label(name: str, files: str | None) -> str:
    """``name``, with what the files are when that says more: ``cifar10 (CIFAR-10, JPEG copy)``, but ``mnist``
    for MNIST's own files. For headers (from a DataSet) and figure titles (from a summary)."""
    if files is None or files.lower().replace("-", "") == name.replace("-", ""):
        return name
    return f"{name} ({files})"


def identify_idx(asked: str, y_train: np.ndarray, y_test: np.ndarray) -> Provenance:
    """MNIST or Fashion-MNIST, from the label order (module docstring); ``asked`` (``--data``) otherwise."""
    heads = (tuple(int(v) for v in y_train[:10]), tuple(int(v) for v in y_test[:10]))
    if heads == MNIST_HEADS:
        return Provenance("mnist", "MNIST", "MNIST's files (their first training and test labels are MNIST's)")
    if heads == FASHION_MNIST_HEADS:
        return Provenance(
            "fashion-mnist",
            "Fashion-MNIST",
            "Fashion-MNIST's files (their first training and test labels are Fashion-MNIST's)",
        )
    return Provenance(
        asked,
        f"unrecognised {asked} files",
        f"files in {asked}'s format whose label order is neither MNIST's nor Fashion-MNIST's: recorded as "
        f"{asked}, as --data says, but not recognised",
    )


def identify_cifar(md5s: dict[str, str], first_filename: str) -> Provenance:
    """The official CIFAR-10 files, a JPEG-rebuilt copy, or other CIFAR-format files (module docstring)."""
    if md5s == CIFAR10_MD5:
        return Provenance("cifar10", "CIFAR-10", "the official CIFAR-10 python files (every md5 is the published one)")
    if first_filename.lower().endswith((".jpg", ".jpeg")):
        return Provenance(
            "cifar10",
            "CIFAR-10, JPEG copy",
            "not the official CIFAR-10 files: their md5s differ from the published ones and the images' filenames "
            f"are JPEG files ({first_filename[:60]}): a copy rebuilt from lossy JPEG images",
        )
    return Provenance(
        "cifar10",
        "CIFAR-10 format, not the official files",
        "files in CIFAR-10's python format whose md5s differ from the published ones",
    )
