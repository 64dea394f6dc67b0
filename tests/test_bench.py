"""The bench command runs and reports a ratio (its numbers are measurements, not asserted here)."""

import re

from amsgrad_repro.cli import main


def test_bench_prints_rates_and_ratio(capsys):
    assert main(["bench", "--trial-steps", "300", "--fused-steps", "20000", "--runs", "3", "--json"]) == 0
    out = capsys.readouterr().out
    assert "Trial (torchbearer)" in out and "fused, 1 run" in out and "fused, 3 runs at once" in out
    ratio = float(re.search(r"ratio fused / Trial \(1 run\): ([\d,]+)×", out).group(1).replace(",", ""))
    assert ratio > 1
