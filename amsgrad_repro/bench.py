"""``python -m amsgrad_repro bench``: how much faster the fused engine is than the Trial, measured in one run.

Usage::

    python -m amsgrad_repro bench                       # the README's table
    python -m amsgrad_repro bench --trial-steps 5000    # quicker, noisier
    python -m amsgrad_repro bench --memory              # also peak memory of full runs, 1 M vs 10 M steps
    python -m amsgrad_repro bench --models mlp cifarnet # real-data models (default: logreg mlp)
    python -m amsgrad_repro bench --ray [ADDRESS]       # what Ray costs: start-up and per-task overhead
    python -m amsgrad_repro bench --skip-synthetic --verdict 20000   # verdict's engines and default battery

It times, in this one process and on the same problem and optimizer:

1. the torchbearer Trial path (no logging), ``--trial-steps`` steps;
2. the fused engine, one run, ``--fused-steps`` steps (after a warm-up, so the JIT is not counted);
3. the fused engine with ``--runs`` runs at once (runs × steps per second);

and prints steps per second for each and the ratio fused / Trial. Then:

4. ``--lane-runs`` Adam/AMSGrad runs × ``--lane-steps`` through the lane kernel (:mod:`.synthetic.lanes`, SIMD
   across runs) and through the single-run kernel: run-steps per second of each and their ratio;
5. a paper-length ``python -m amsgrad_repro online`` (10 M steps, warm kernel cache, a fresh process) against
   ``python -c "import torch"``, alternated ``--startup-repeats`` times: the medians and their ratio (the fused
   path imports no torch, so it can finish first); with ``--busy``, the same two again beside two busy
   processes, and the busy / quiet ratios, and step 4's lane runs in this process against the same runs split
   over one-thread processes (as ``--ray`` runs a phase grid), quiet and busy (:mod:`.bench_busy`).

With ``--memory`` it also runs the whole
CLI (both optimizers, TensorBoard writing) at 1 M and 10 M steps in child processes and prints each one's
peak resident memory and wall time.

Then, for each real-data model of ``--models``, the time of one training iteration (batch 128, Adam) through the
torchbearer Trial as the commands build it (loader, loss, :class:`~.realdata.trial.RunLogger` writing every 50
iterations, progress callback) against a plain torch loop written here, on the same model, weights and batches:
``--real-iterations`` each, alternated three times, the median of each printed with their ratio (the Trial's
overhead), and the share of a ``--gamma`` Trial's time spent in its :class:`~.realdata.trial.GammaStats` (Γ read
every 50 iterations), timed inside the run (issue 25 targets under 5 % for mlp). logreg and mlp train on the
embedded MNIST subset; cifarnet on random 3×32×32 images (its speed does not depend on the pixels). Test evaluation
is left out of both. For cifarnet it also times its two convolutions alone, forward and backward at the iteration's
shapes (the first without an input gradient, as in training), channels-last, as plain torch calls: the floor an
iteration cannot go below on this machine's torch, printed as the ratio Trial / convolutions (issue 26 targets ≤
1.3).

With ``--verdict STEPS`` it times ``verdict``'s battery at STEPS steps a run (:mod:`amsgrad_repro.verdict.timing`
says what, and against what floor).

With ``--ray`` it measures what running on Ray adds (:mod:`amsgrad_repro.cluster`): the time to start (or join)
Ray, the round trip of one empty task waited for on its own, and the driver's cost per task when
``--ray-tasks`` empty tasks are submitted at once (the throughput limit of tiny tasks), each through
:meth:`~amsgrad_repro.cluster.Cluster.run` as the commands use it.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import TYPE_CHECKING

import numpy as np

from .bench_busy import busy_timings, lane_runs, time_startup
from .optimizers import ZOO, resolve
from .runs import UsageError
from .signals import raise_stop
from .synthetic.config import ProblemConfig
from .values import count

if TYPE_CHECKING:
    from .synthetic.fused import FusedRun

_CHILD = """
import resource, sys, time
from amsgrad_repro.cli import main
start = time.perf_counter()
code = main(sys.argv[1:])
wall = time.perf_counter() - start
print("BENCH", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, wall, code)
"""


def _functions(setting: str):
    """The problem's torch-free maths: what the fused engine reads."""
    return ProblemConfig(setting).functions()


def _problem(setting: str):
    return ProblemConfig(setting).make()


def time_trial(setting: str, optimizer: str, steps: int) -> float:
    """Seconds for ``steps`` Trial steps (no logging)."""
    from .synthetic.trial import build_trial  # torch and torchbearer: imported when a Trial is timed

    problem = _problem(setting)
    trial = build_trial(problem, resolve(optimizer).build(problem.parameters()), steps)
    start = time.perf_counter()
    trial.run()
    return time.perf_counter() - start


def time_fused(setting: str, runs: list[FusedRun], steps: int, simd: bool | None = None) -> float:
    """Seconds for ``steps`` steps of every run at once (logging every 1000 steps, no writer); ``simd`` as
    :func:`~amsgrad_repro.synthetic.fused.simulate` takes it."""
    from .synthetic.fused import simulate  # here, not at the top: the CLI's --help needs no kernel

    start = time.perf_counter()
    result = simulate([_functions(setting)], runs, steps, log_every=1000, on_log=lambda *a: None, simd=simd)
    if result.interrupted:  # Ctrl-C stopped the kernel at a window's end: stop bench, not just this timing
        raise_stop()
    return time.perf_counter() - start


def cli_peak_memory(setting: str, steps: int) -> tuple[float, float, float]:
    """(peak RSS in MiB, seconds inside main(), seconds for the whole process) of a CLI run in a child."""
    with tempfile.TemporaryDirectory() as logdir:
        args = [setting, "--steps", str(steps), "--logdir", logdir, "--run-name", "bench", "--no-progress"]
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", _CHILD, *args], capture_output=True, text=True, check=True)
        total = time.perf_counter() - start
    line = next(x for x in proc.stdout.splitlines() if x.startswith("BENCH"))
    _, rss_kib, wall, _ = line.split()
    return int(rss_kib) / 1024, float(wall), total


def time_real_iteration(model_name: str, iterations: int, repeats: int = 3) -> tuple[float, float, float]:
    """(Trial seconds per iteration, plain loop seconds per iteration, the share of a ``--gamma`` Trial's time
    spent in its :class:`~.realdata.trial.GammaStats`, logging every 50 iterations), medians over ``repeats``
    alternations."""
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    from .callbacks import Progress
    from .realdata.data import embedded
    from .realdata.models import build_model, to_input
    from .realdata.trial import Batches, GammaStats, RunLogger, build_trial

    if model_name == "cifarnet":
        rng = np.random.default_rng(0)
        x, y = rng.integers(0, 256, (2048, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, 2048)
    else:
        data = embedded()
        x, y = data.x_train, data.y_train
    shape = tuple(x.shape[1:])
    batches = Batches(x, y, 128, seed=0)

    def plain() -> float:
        model = build_model(model_name, shape, 0)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        start = time.perf_counter()
        for t in range(1, iterations + 1):
            idx = batches.indices(t)
            opt.zero_grad()
            loss = F.cross_entropy(model(to_input(batches.x[idx])), batches.y[idx])
            loss.backward()
            opt.step()
            loss.item()
        return (time.perf_counter() - start) / iterations

    class TimedGamma(GammaStats):
        """GammaStats that adds up the time spent in it: its share of the run, measured inside the run (the
        difference of two whole timings is smaller than their noise on a shared machine)."""

        seconds = 0.0

        def on_step_training(self, state: dict) -> None:
            start = time.perf_counter()
            super().on_step_training(state)
            TimedGamma.seconds += time.perf_counter() - start

    def trial(gamma: bool = False) -> float:
        model = build_model(model_name, shape, 0)
        with tempfile.TemporaryDirectory() as logdir, tqdm(total=iterations, disable=True) as bar:
            callbacks = [RunLogger(logdir, 50, iterations), Progress(bar, 50)]
            callbacks = [TimedGamma(50, iterations), *callbacks] if gamma else callbacks
            t = build_trial(model, torch.optim.Adam(model.parameters(), lr=1e-3), batches, iterations, callbacks)
            start = time.perf_counter()
            t.run()
            return (time.perf_counter() - start) / iterations

    plain(), trial()  # warm-up: allocator, first-call costs
    trial_s, plain_s, gamma_s, share = [], [], [], []
    for _ in range(repeats):
        plain_s.append(plain())
        trial_s.append(trial())
        TimedGamma.seconds = 0.0
        gamma_s.append(trial(gamma=True))
        share.append(TimedGamma.seconds / (gamma_s[-1] * iterations))
    return statistics.median(trial_s), statistics.median(plain_s), statistics.median(share)


def time_cifarnet_convolutions(iterations: int, repeats: int = 3) -> float:
    """Seconds per iteration of CIFARNET's two 6×6/64 convolutions alone at batch 128 on 3×32×32 (SAME-padded
    inputs 37×37 and 21×21), forward and backward, channels-last: the median over ``repeats``."""
    import torch

    channels_last = torch.channels_last
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        conv1 = torch.nn.Conv2d(3, 64, 6).to(memory_format=channels_last)
        conv2 = torch.nn.Conv2d(64, 64, 6).to(memory_format=channels_last)
        x1 = torch.rand(128, 3, 37, 37).contiguous(memory_format=channels_last)  # the images: no gradient
        x2 = torch.rand(128, 64, 21, 21).contiguous(memory_format=channels_last).requires_grad_()

    def once() -> float:
        start = time.perf_counter()
        for _ in range(iterations):
            y1, y2 = conv1(x1), conv2(x2)
            torch.autograd.backward([y1, y2], [torch.ones_like(y1), torch.ones_like(y2)])
        return (time.perf_counter() - start) / iterations

    once()  # warm-up: oneDNN picks and caches its kernels
    return statistics.median(once() for _ in range(repeats))


def _empty(k: int) -> int:
    return k


def time_ray(flag: str, tasks: int) -> dict:
    """Start-up, one task's round trip (median of 20, one at a time), and the cost per task of ``tasks``
    empty tasks at once; prints them and returns them."""
    from .cluster import connect

    start = time.perf_counter()
    with connect(flag) as cluster:
        startup = time.perf_counter() - start
        list(cluster.run(_empty, [(k, (k,)) for k in range(4)]))  # workers up
        trips = []
        for k in range(20):
            t0 = time.perf_counter()
            list(cluster.run(_empty, [(k, (k,))]))
            trips.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        list(cluster.run(_empty, [(k, (k,)) for k in range(tasks)]))
        per_task = (time.perf_counter() - t0) / tasks
        where = cluster.describe()
    trip = statistics.median(trips)
    print(f"bench: Ray on {where}")
    print(f"  start-up (connect, or start a local instance): {startup:.2f} s")
    print(f"  one empty task, submitted and waited for alone: {trip * 1e3:.1f} ms (median of 20)")
    print(f"  {tasks:,} empty tasks at once: {per_task * 1e3:.2f} ms per task")
    return {"ray_startup_s": startup, "ray_task_round_trip_s": trip, "ray_per_task_s": per_task}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--setting", choices=["online", "stochastic"], default="online", help="problem to time")
    p.add_argument("--optimizer", choices=list(ZOO), default="amsgrad-pytorch", help="optimizer to time")
    p.add_argument("--trial-steps", type=count, default=20_000, help="steps timed through the Trial")
    p.add_argument("--fused-steps", type=count, default=10_000_000, help="steps timed through the fused engine")
    p.add_argument("--runs", type=count, default=64, help="runs at once for the batched measurement")
    p.add_argument("--lane-runs", type=count, default=2048, help="runs for the lanes-against-single-run measurement")
    p.add_argument("--lane-steps", type=count, default=1_000_000, help="steps of each run for that measurement")
    p.add_argument(
        "--startup-repeats",
        type=count,
        default=3,
        help="paper-length `online` and `python -c 'import torch'` are each timed this many times (medians)",
    )
    p.add_argument(
        "--busy",
        action="store_true",
        help="also time the paper-length `online`, `import torch` and the lane runs (in this process and split over "
        "one-thread processes) beside two busy processes (`python3 -c 'while True: pass'` twice, killed after) and "
        "print the ratios (issue 27)",
    )
    p.add_argument("--memory", action="store_true", help="also time full CLI runs at 1 M and 10 M steps (peak RSS)")
    p.add_argument("--json", action="store_true", help="print the numbers as JSON too")
    p.add_argument(
        "--models",
        nargs="*",
        choices=["logreg", "mlp", "cifarnet"],
        default=["logreg", "mlp"],
        help="real-data models to time, Trial against a plain torch loop (none: skip)",
    )
    p.add_argument("--real-iterations", type=count, default=300, help="iterations per timing of a real-data model")
    p.add_argument("--skip-synthetic", action="store_true", help="time only the real-data models")
    p.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="also time Ray's start-up and per-task overhead (no ADDRESS: a local instance; auto or host:port: join)",
    )
    p.add_argument("--ray-tasks", type=count, default=1000, help="empty tasks submitted at once for --ray")
    p.add_argument(
        "--verdict",
        type=count,
        default=0,
        metavar="STEPS",
        help="also time verdict's torch engine and fused battery at STEPS steps a run (0: not)",
    )


def run(args: argparse.Namespace) -> int:
    sizes = (args.trial_steps, args.fused_steps, args.runs, args.real_iterations, args.ray_tasks, args.lane_runs,
             args.lane_steps, args.startup_repeats)  # fmt: skip
    if min(sizes) < 1:
        raise UsageError(
            "bench: --trial-steps, --fused-steps, --runs, --real-iterations, --ray-tasks, --lane-runs, --lane-steps "
            "and --startup-repeats must be >= 1"
        )
    if args.verdict < 0 or 0 < args.verdict < 4:
        raise UsageError(f"bench: --verdict takes the steps of a run, at least 4 (0: not timed), got {args.verdict}")
    if args.skip_synthetic and not args.models and args.ray is None and not args.verdict:
        raise UsageError("bench: nothing to time (--skip-synthetic and no --models)")
    for flag, runs in (("--runs", args.runs), ("--lane-runs", args.lane_runs)):  # counted before any state exists
        if runs > 100_000:
            raise UsageError(f"bench: {flag} {runs:,} is too many for one batched measurement (at most 100,000)")
    out: dict = {}
    if not args.skip_synthetic:
        out |= _run_synthetic(args)
    if args.models:
        out |= _run_real(args)
    if args.verdict:
        from .verdict.timing import time_verdict  # torch: imported when the battery is timed

        out |= time_verdict(args.verdict)
    if args.ray is not None:
        out |= time_ray(args.ray, args.ray_tasks)
    if args.json:
        print(json.dumps(out))
    return 0


def _run_real(args: argparse.Namespace) -> dict:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what a real-data run uses by default (--threads 1)
    try:
        return _time_real(args, torch)
    finally:
        torch.set_num_threads(threads)


def _time_real(args: argparse.Namespace, torch) -> dict:
    print(
        f"bench: real-data models, batch 128, Adam, {args.real_iterations} iterations × 3 alternations, "
        f"{torch.get_num_threads()} torch threads"
    )
    rows, out = [], {}
    for name in args.models:
        trial_s, plain_s, gamma_share = time_real_iteration(name, args.real_iterations)
        rows.append((name, f"{trial_s * 1e3:.3f} ms", f"{plain_s * 1e3:.3f} ms", f"{trial_s / plain_s:.3f}",
                     f"{gamma_share:.2%}"))  # fmt: skip
        out[f"{name}_trial_s_per_it"], out[f"{name}_plain_s_per_it"] = trial_s, plain_s
        out[f"{name}_gamma_share"] = gamma_share
    header = ("model", "Trial / iteration", "plain loop / iteration", "ratio Trial / plain", "--gamma's share")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    for r in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    if "cifarnet" in args.models:
        convs = time_cifarnet_convolutions(max(2, args.real_iterations // 2))
        out["cifarnet_convolutions_s_per_it"] = convs
        print(
            f"cifarnet: its two convolutions alone {convs * 1e3:.1f} ms an iteration (forward + backward, "
            f"channels-last); ratio Trial / convolutions {out['cifarnet_trial_s_per_it'] / convs:.2f} (target ≤ 1.3)"
        )
    return out


def _run_synthetic(args: argparse.Namespace) -> dict:
    from .synthetic.fused import FusedRun, simulate  # here, not at the top: the CLI's --help needs no kernel

    one = [FusedRun.of(args.optimizer)]
    many = [FusedRun.of("adam" if i % 2 else "amsgrad", lr=1e-3 * (1 + i)) for i in range(args.runs)]
    start = time.perf_counter()
    simulate([_functions(args.setting)], one, 10)  # JIT (or load from the on-disk cache)
    jit = time.perf_counter() - start
    simulate([_functions(args.setting)], many, 10)

    print(f"bench: timing {args.trial_steps:,} Trial steps ...", flush=True)
    trial_s = time_trial(args.setting, args.optimizer, args.trial_steps)
    print(f"bench: timing {args.fused_steps:,} fused steps (1 run, then {args.runs} at once) ...", flush=True)
    fused_s = time_fused(args.setting, one, args.fused_steps)
    many_s = time_fused(args.setting, many, args.fused_steps)
    trial_rate = args.trial_steps / trial_s
    fused_rate = args.fused_steps / fused_s
    many_rate = args.runs * args.fused_steps / many_s

    print(f"bench: {args.setting}, {args.optimizer}, lr 1e-3, β (0.9, 0.99); JIT/cache load {jit:.2f} s")
    batched = f"fused, {args.runs} runs at once"
    rows = [
        ("Trial (torchbearer)", f"{args.trial_steps:,}", f"{trial_s:.2f}", trial_rate, f"{1e6 / trial_rate:.1f} µs"),
        ("fused, 1 run", f"{args.fused_steps:,}", f"{fused_s:.3f}", fused_rate, f"{1e9 / fused_rate:.1f} ns"),
        (batched, f"{args.runs} × {args.fused_steps:,}", f"{many_s:.3f}", many_rate, f"{1e9 / many_rate:.1f} ns"),
    ]
    rows = [(a, b, c, f"{rate:,.0f}", e) for a, b, c, rate, e in rows]
    header = ("path", "steps", "seconds", "steps/s", "per step")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    for r in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    print(f"ratio fused / Trial (1 run): {fused_rate / trial_rate:,.0f}×")
    print(f"ratio fused / Trial ({args.runs} runs at once, run-steps/s): {many_rate / trial_rate:,.0f}×")

    # the lane kernel (synthetic/lanes.py) against the single-run kernel, on the same Adam-family runs
    lanes = lane_runs(args.lane_runs)
    simulate([_functions(args.setting)], lanes[:8], 10, simd=True)  # its JIT (or cache load)
    lanes_s = time_fused(args.setting, lanes, args.lane_steps, simd=True)
    single_s = time_fused(args.setting, lanes, args.lane_steps, simd=False)
    lane_rate, single_rate = (args.lane_runs * args.lane_steps / t for t in (lanes_s, single_s))
    print(
        f"{args.lane_runs} Adam/AMSGrad runs × {args.lane_steps:,} steps: SIMD lanes {lanes_s:.2f} s "
        f"({lane_rate / 1e9:.2f} G run-steps/s), single-run kernel {single_s:.2f} s ({single_rate / 1e9:.2f} G "
        f"run-steps/s); ratio lanes / single-run: {single_s / lanes_s:.2f}×"
    )

    # a paper-length run, whole process, against importing torch (issue 16: the first should be faster)
    online_s, gamma_s, torch_s = time_startup(args.startup_repeats)
    print(
        f"paper length: `python -m amsgrad_repro online` (10 M steps, warm cache) {online_s:.2f} s, "
        f"`python -c 'import torch'` {torch_s:.2f} s (medians of {args.startup_repeats}); "
        f"ratio online / import torch: {online_s / torch_s:.2f}"
    )
    print(f"paper length with --gamma (Γ_t logged): {gamma_s:.2f} s; ratio with / without: {gamma_s / online_s:.2f}")
    busy = {}
    if args.busy:
        busy = busy_timings(
            args, online_s, torch_s, lanes_s, lambda: time_fused(args.setting, lanes, args.lane_steps, simd=True)
        )
    out = {
        **busy,
        "lanes_run_steps_per_s": lane_rate,
        "single_run_kernel_run_steps_per_s": single_rate,
        "online_wall_s": online_s,
        "online_gamma_wall_s": gamma_s,
        "import_torch_wall_s": torch_s,
        "trial_steps_per_s": trial_rate,
        "fused_steps_per_s": fused_rate,
        "fused_batched_run_steps_per_s": many_rate,
        "ratio": fused_rate / trial_rate,
        "jit_seconds": jit,
    }
    if args.memory:
        for steps in (1_000_000, 10_000_000):
            rss, wall, total = cli_peak_memory(args.setting, steps)
            print(
                f"CLI {args.setting} --steps {steps:,} (adam + amsgrad, TensorBoard writing): peak RSS {rss:.0f} MiB,"
                f" {wall:.2f} s in main(), {total:.2f} s for the whole process"
            )
            out[f"cli_{steps}_peak_rss_mib"] = rss
            out[f"cli_{steps}_main_s"] = wall
            out[f"cli_{steps}_process_s"] = total
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"(this bench process peaked at {own:.0f} MiB)")
    return out
