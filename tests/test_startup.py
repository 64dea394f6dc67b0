"""The fused engine's commands start without torch: `online`, `stochastic` (fused) and `--help` import neither torch
nor torchbearer, and `--help` no kernel either (issue 16: a paper-length run must take less time than `import
torch`); and the torch-free maths the fused engine reads is the Trial's problem to the bit.

Usage::

    pytest tests/test_startup.py
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from amsgrad_repro.synthetic.config import ProblemConfig

_CHILD = """
import sys
from amsgrad_repro.cli import main
code = main(sys.argv[1:])
heavy = sorted(m for m in ("torch", "torchbearer", "tensorboardX", "matplotlib") if m in sys.modules)
print("HEAVY", ",".join(heavy) or "-", "CODE", code)
"""


@pytest.mark.parametrize(
    "args",
    [
        ["online", "--steps", "20000"],
        ["stochastic", "--steps", "20000", "--seed", "0:2", "--dtype", "float64"],
        ["online", "--steps", "20000", "--optimizers", "adam", "adamnc", "nadam", "--lr", "0.01", "0.1"],
    ],
    ids=["online", "stochastic", "zoo-sweep"],
)
def test_the_fused_commands_import_neither_torch_nor_torchbearer(tmp_path, args):
    argv = [*args, "--logdir", str(tmp_path), "--run-name", "r", "--no-progress"]
    proc = subprocess.run([sys.executable, "-c", _CHILD, *argv], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "engine: fused" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY - CODE 0"


def test_help_imports_no_torch_and_no_kernel():
    """Building every command's parser (what --help does) loads neither torch nor numba nor TensorBoard's code:
    the commands import them when they run."""
    code = (
        "import sys\nfrom amsgrad_repro.cli import build_parser\nbuild_parser()\n"
        "print(sorted(m for m in ('torch', 'numba', 'tensorboard', 'matplotlib') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize(("setting", "preset"), [("online", "paper"), ("online", "theorem1"), ("stochastic", "paper"),
                                                ("stochastic", "theorem3")])  # fmt: skip
def test_the_torch_free_functions_are_the_trial_s_problem(setting, preset):
    cfg = ProblemConfig(setting, preset=preset, seed=7, x0=0.25, bounds=(-2.0, 0.5), dtype="float64")
    functions, problem = cfg.functions(), cfg.make()
    assert np.array_equal(functions.coefs(1, 50_000), problem.coefs(1, 50_000))
    assert functions.coefs(12_345, 10).tolist() == [problem.coef(t) for t in range(12_345, 12_355)]
    assert (functions.x_star, functions.mean_slope, functions.x0) == (problem.x_star, problem.mean_slope, 0.25)
    assert functions.describe() == problem.describe()
    assert float(problem.x.detach()) == 0.25 and problem.x.dtype.is_floating_point
