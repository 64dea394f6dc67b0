"""The layers hold: `lint-imports` keeps every contract in pyproject.toml, and the contracts really bite.

Usage::

    pytest tests/test_layers.py
    lint-imports                      # the same check by hand, from the repository root

The contracts (docs/development.md, "Layout"): faces > wings > spine > ground, nothing imports upward; the two
wings do not import each other; each wing's own layers; no import cycle at any depth. The second and third tests
copy the package, add one import that breaks a contract, and check that `lint-imports` fails and prints the
offending chain, so a contract that stopped checking anything (a renamed module, a typo in a layer) is caught too.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
pytestmark = pytest.mark.skipif(LINT is None, reason="import-linter is not installed (pip install -e '.[test]')")


def _lint(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    """`lint-imports` with the repository's contracts, importing ``amsgrad_repro`` from ``pythonpath``."""
    env = {"PYTHONPATH": str(pythonpath), "PATH": str(Path(sys.executable).parent), "NO_COLOR": "1"}
    return subprocess.run(
        [LINT, "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_every_contract_is_kept():
    result = _lint(ROOT, ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _broken_copy(tmp_path: Path, module: str, line: str) -> subprocess.CompletedProcess:
    """Copy the package, put ``line`` at the end of ``module`` (a path inside it), and lint the copy."""
    shutil.copytree(ROOT / "amsgrad_repro", tmp_path / "amsgrad_repro", ignore=shutil.ignore_patterns("__pycache__"))
    with open(tmp_path / "amsgrad_repro" / module, "a", encoding="utf-8") as f:
        f.write(f"\n{line}\n")
    return _lint(tmp_path, tmp_path)


@pytest.mark.parametrize(
    ("module", "line", "contract", "chain"),
    [
        # the spine reaching up into a wing (and so a cycle: the wing imports the spine)
        ("runs.py", "from .synthetic import config", "Layers", "amsgrad_repro.runs -> amsgrad_repro.synthetic.config"),
        # one wing importing the other
        (
            "realdata/models.py",
            "from ..synthetic import problems",
            "The wings do not import each other",
            "amsgrad_repro.realdata.models -> amsgrad_repro.synthetic.problems",
        ),
        # inside a wing: the problems importing the invocation that uses them
        (
            "synthetic/problems.py",
            "from . import experiment",
            "Synthetic wing",
            "amsgrad_repro.synthetic.problems -> amsgrad_repro.synthetic.experiment",
        ),
        # the ground importing a face
        ("algorithms.py", "from . import plot", "Layers", "amsgrad_repro.algorithms -> amsgrad_repro.plot"),
    ],
)
def test_a_broken_contract_fails_with_its_chain(tmp_path, module, line, contract, chain):
    result = _broken_copy(tmp_path, module, line)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    broken = [ln for ln in out.splitlines() if ln.endswith("BROKEN")]
    assert any(ln.startswith(contract) for ln in broken), out
    assert chain in out, out
