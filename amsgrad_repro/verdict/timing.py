"""What ``verdict``'s battery costs, measured in one process (``python -m amsgrad_repro bench --verdict STEPS``).

Usage::

    from amsgrad_repro.verdict.timing import time_verdict

    numbers = time_verdict(20_000)   # prints bench's verdict lines, returns the numbers

It times ``torch.optim.Adam``'s default battery through the torch engine at STEPS steps a run, part by part (as
``--jobs`` runs them: :func:`~.battery.parts`, one a core), and, on the same part's settings, **the floor**: the
``step()`` calls alone (one optimizer, one param group a setting, one 1-d parameter a group holding its runs, the
gradients set once), which no engine that runs this optimizer's own code can go below: the battery needs one call
a step. The ratio engine / floor is what the engine adds (the slopes, the clamp, reading x). Then ``adam``'s
battery through the fused engine; the torch engine's cost per run-step against a Trial's step (one run, the same
optimizer); and the default battery's projected wall time (linear in the steps; parts in parallel up to this
process's CPUs) against ``python -c "import torch"``: the ratio issue 23 targets at ≤ 40.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from .battery import Battery, load, parts, plan, run_battery


def time_import_torch(repeats: int) -> float:
    """The median wall seconds of ``python -c "import torch"`` in a fresh process, ``repeats`` times."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_trial_step(cls, steps: int) -> float:
    """Seconds per step of a Trial running ``cls`` (lr 1e-3) on the paper's online problem, no logging."""
    from ..synthetic.config import ProblemConfig
    from ..synthetic.trial import build_trial

    problem = ProblemConfig("online").make()
    trial = build_trial(problem, cls(problem.parameters(), lr=1e-3), steps)
    start = time.perf_counter()
    trial.run()
    return (time.perf_counter() - start) / steps


def time_step_calls(cls, groups: list[tuple[dict, int]], calls: int) -> float:
    """Seconds per ``step()`` of one ``cls`` with a param group per ``(settings, runs)``, a 1-d parameter of
    ``runs`` coordinates each, its gradient set once (the floor: see the module docstring)."""
    import torch

    params = [torch.nn.Parameter(torch.zeros(runs)) for _, runs in groups]
    optimizer = cls([{"params": [p], **settings} for p, (settings, _) in zip(params, groups, strict=True)])
    with torch.no_grad():
        for p in params:
            p.grad = torch.full_like(p, -1.0)
        optimizer.step()  # the state's first allocation, not timed
        start = time.perf_counter()
        for _ in range(calls):
            optimizer.step()
    return (time.perf_counter() - start) / calls


def time_verdict(steps: int) -> dict:
    """``verdict``'s engines at ``steps`` steps a run (see the module docstring); prints bench's lines, returns
    the numbers."""
    import torch

    from ..pool import usable_cpus

    battery = Battery(steps=steps)
    spec = "torch.optim.Adam"
    optimizer = load(spec)
    cases = plan(battery, optimizer)
    cores = usable_cpus()
    part_s, floor_s = [], []
    for part in parts(battery, optimizer, cores):
        start = time.perf_counter()
        run_battery(spec, battery, settings=part)
        part_s.append(time.perf_counter() - start)
        groups = []
        for setting in part:
            members = [c for c in cases if c.setting == setting]
            first = members[0]
            settings = {"lr": first.lr} | ({} if first.betas is None else {"betas": first.betas})
            groups.append((settings, len(members)))
        floor_s.append(time_step_calls(optimizer.cls, groups, min(steps, 20_000)) * steps)
    run_battery("adam", Battery(steps=1000))  # the fused kernels' JIT or cache load, not timed
    start = time.perf_counter()
    run_battery("adam", Battery())
    fused_s = time.perf_counter() - start
    trial = time_trial_step(torch.optim.Adam, min(steps, 5000))
    engine = sum(part_s) / (len(cases) * steps)
    scale = Battery.steps / steps
    waves = -(-len(part_s) // cores)  # parts beyond the cores wait for a free one
    projected = max(part_s) * scale * waves
    floor = max(floor_s) * scale * waves
    import_torch = time_import_torch(3)
    print(f"bench: verdict, {spec}'s battery ({len(cases)} runs, {len(part_s)} part(s) on {cores} core(s)) at "
          f"{steps:,} steps a run")  # fmt: skip
    print(f"  torch engine {engine * 1e6:.1f} µs a run-step; the Trial {trial * 1e6:.1f} µs a step (one run): "
          f"ratio Trial / torch engine {trial / engine:.1f}×")  # fmt: skip
    print(f"  the optimizer's own step() calls alone (the floor): {max(floor_s) / steps * 1e6:.0f} µs a step of "
          f"the longest part; ratio torch engine / floor {max(part_s) / max(floor_s):.2f}")  # fmt: skip
    print(f"  default battery ({Battery.steps:,} steps): {spec} projected {projected:.0f} s "
          f"(floor {floor:.0f} s) = {projected / import_torch:.0f}× `python -c \"import torch\"` "
          f"({import_torch:.2f} s); adam (fused) {fused_s:.1f} s")  # fmt: skip
    return {"verdict_torch_s_per_run_step": engine, "verdict_trial_s_per_step": trial,
            "verdict_default_projected_s": projected, "verdict_floor_projected_s": floor,
            "verdict_import_torch_s": import_torch, "verdict_fused_default_s": fused_s}  # fmt: skip
