"""The bench command runs and reports a ratio (its numbers are measurements, not asserted here)."""

import json
import re

from amsgrad_repro.cli import main


def test_bench_prints_rates_and_ratio(capsys):
    argv = ["bench", "--trial-steps", "300", "--fused-steps", "20000", "--runs", "3", "--json", "--models"]
    argv += ["--lane-runs", "40", "--lane-steps", "5000", "--startup-repeats", "1", "--busy"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Trial (torchbearer)" in out and "fused, 1 run" in out and "fused, 3 runs at once" in out
    ratio = float(re.search(r"ratio fused / Trial \(1 run\): ([\d,]+)×", out).group(1).replace(",", ""))
    assert ratio > 1
    lanes = re.search(r"40 Adam/AMSGrad runs × 5,000 steps: SIMD lanes .*; ratio lanes / single-run: ([\d.]+)×", out)
    startup = re.search(r"paper length: .* \(medians of 1\); ratio online / import torch: ([\d.]+)$", out, re.M)
    gamma = re.search(r"paper length with --gamma \(Γ_t logged\): [\d.]+ s; ratio with / without: ([\d.]+)$", out, re.M)
    busy = re.search(r"beside two busy processes: online [\d.]+ s \(busy / quiet ([\d.]+), target", out)
    split = re.search(
        r"40 lane runs × 5,000 steps, in this process against split over \d+ one-thread processes "
        r".*quiet [\d.]+ s against [\d.]+ s \(ratio ([\d.]+)\), busy [\d.]+ s against [\d.]+ s",
        out,
    )
    assert lanes is not None and startup is not None and gamma is not None and busy is not None, out
    assert split is not None, out
    assert float(lanes.group(1)) > 0 and float(startup.group(1)) > 0 and float(split.group(1)) > 0
    numbers = json.loads(out.strip().splitlines()[-1])  # --json: the last line
    assert all(numbers[k] > 0 for k in ("lanes_split_s", "lanes_busy_s", "lanes_split_busy_s"))


def test_bench_times_real_data_models_against_a_plain_loop(capsys):
    argv = ["bench", "--skip-synthetic", "--models", "logreg", "mlp", "--real-iterations", "20", "--json"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    for model in ("logreg", "mlp"):
        row = re.search(rf"^{model}\s+([\d.]+) ms\s+([\d.]+) ms\s+([\d.]+)\s+([\d.]+)%$", out, re.M)
        assert row is not None, out
        trial, plain, ratio, gamma = map(float, row.groups())
        assert trial > 0 and plain > 0 and abs(ratio - trial / plain) < 0.01 and 0 < gamma < 100


def test_bench_times_the_verdict_engines(capsys):
    argv = ["bench", "--skip-synthetic", "--models", "--verdict", "200", "--json"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    engine = re.search(r"torch engine ([\d.]+) µs a run-step; the Trial ([\d.]+) µs a step", out)
    floor = re.search(r"\(the floor\): (\d+) µs a step of the longest part; ratio torch engine / floor ([\d.]+)", out)
    default = re.search(r"projected (\d+) s \(floor (\d+) s\) = (\d+)× `python -c \"import torch\"`", out)
    assert engine is not None and floor is not None and default is not None, out
    assert float(engine.group(1)) > 0 and float(engine.group(2)) > 0 and int(default.group(3)) >= 0
    assert int(floor.group(1)) > 0 and float(floor.group(2)) > 0  # no order asserted: timings on a busy machine
