"""Command line: ``python -m amsgrad_repro COMMAND [flags]`` (also installed as ``amsgrad-repro``).

Usage::

    python -m amsgrad_repro online --steps 20000 --run-name quick
    python -m amsgrad_repro stochastic --seed 3 --optimizers adam amsgrad torch.optim.SGD
    python -m amsgrad_repro mlp                    # Figure 2: Adam vs AMSGrad on MNIST (embedded subset if need be)
    python -m amsgrad_repro logreg --data fashion-mnist --lr 1e-3:1e-1:3 --beta2 0.99 0.999 --seed 0:3
    python -m amsgrad_repro online --help          # every flag with its default
    python -m amsgrad_repro bench                  # Trial vs fused engine, steps per second
    python -m amsgrad_repro plot logs/online/RUN logs/stochastic/RUN     # Figure 1 as PNG and SVG
    python -m amsgrad_repro phase                  # heat maps over a (β1, β2) grid

Bad input prints one line on stderr and exits with status 2; nothing is written. Ctrl-C exits with 130 and
SIGTERM with 143, after writing what was done.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from collections.abc import Sequence

from . import __version__
from .cluster import add_ray_flags
from .optimizers import ALIASES, ZOO
from .report import one_line
from .runs import BackendLost, UsageError, WriteFailed
from .schedules import BETA1_SCHEDULES, LR_SCHEDULES
from .signals import exit_code, handle_signals
from .synthetic.config import Config, ProblemConfig
from .synthetic.functions import PRESETS
from .values import add_dtype_flag, add_output_flags, count, lr_values, seed_values

PROG = "amsgrad-repro"


class _Parser(argparse.ArgumentParser):
    """argparse, but an error is one line (no usage block) and exit status 2, and ``-1e-3`` is a number (stock
    argparse reads only ``-1`` and ``-0.5`` as numbers, and ``-1e-3`` as an unknown option)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # negative numbers are values, also in scientific notation and -inf/-nan (refused later, in one line)
        self._negative_number_matcher = re.compile(r"^-((\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|inf|infinity|nan)$", re.I)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, one_line(message, f"{self.prog}: error: ", " (see --help)") + "\n")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default; lists are shown as typed (``adam amsgrad``)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is argparse.SUPPRESS or action.option_strings == [] or action.nargs == 0:
            return text
        default = action.default
        if isinstance(default, (list, tuple)):
            default = " ".join(str(d) for d in default)
        elif default is None:
            return text
        return f"{text} (default: {str(default).replace('%', '%%')})"


def _add_optimizers_flag(g, default: Sequence[str], lead: str = "", tail: str = "") -> None:
    """``--optimizers SPEC…``, the same spec syntax in every command (:func:`amsgrad_repro.optimizers.resolve`)."""
    names = ", ".join([*ZOO, *ALIASES])
    g.add_argument(
        "--optimizers",
        nargs="+",
        default=list(default),
        metavar="SPEC",
        help=f"{lead}SPEC is NAME or NAME,key=value,... with NAME one of {names}, or torch.optim.<Class>{tail}",
    )


def _add_run_flags(p: argparse.ArgumentParser, setting: str) -> None:
    d = Config()
    g = p.add_argument_group("run")
    g.add_argument("--steps", type=count, default=d.steps, help="number of steps T (t = 1..T)")
    _add_optimizers_flag(
        g,
        d.optimizers,
        "one run each, drawn in one chart. ",
        " (Trial engine). Keys: lr, beta1, beta2, eps, momentum, alpha, momentum_decay, lr_schedule, "
        "beta1_schedule, beta1_decay (each optimizer takes its own; see docs/optimizers.md)",
    )
    g.add_argument(
        "--lr",
        type=lr_values,
        nargs="+",
        default=None,
        metavar="LR",
        help="step size α for every optimizer without its own lr; several values or a log range START:STOP:N "
        "sweep it (default: each optimizer's own, 0.001)",
    )
    g.add_argument(
        "--betas",
        type=float,
        nargs=2,
        default=None,
        metavar=("B1", "B2"),
        help="β1 β2 for every optimizer that has them (default: 0.9 0.99, the paper's"
        + ("; with --preset theorem1: β1 = 0, β2 = 1/(1+C²), the theorem's)" if setting == "online" else ")"),
    )
    g.add_argument(
        "--eps", type=float, default=None, help="ε (default: each optimizer's own; docs/optimizers.md lists them)"
    )
    g.add_argument("--momentum", type=float, default=None, help="μ for momentum and nesterov (default: 0.9)")
    g.add_argument(
        "--lr-schedule",
        choices=LR_SCHEDULES,
        default=None,
        help="α_t = α (constant) or α/√t (sqrt), Adam family (default: constant)",
    )
    g.add_argument(
        "--beta1-schedule",
        choices=BETA1_SCHEDULES,
        default=None,
        help="β1t = β1, β1·λ^(t−1) (exp) or β1/t (inverse) (Adam family; default: constant)",
    )
    g.add_argument("--beta1-decay", type=float, default=None, help="λ for --beta1-schedule exp (default: 1)")
    if setting == "stochastic":
        seed_help = "stream seed(s); several values or a range START:STOP (STOP excluded) sweep it (default: 0)"
    else:
        seed_help = "accepted for symmetry with stochastic; the online problem is deterministic (default: 0)"
    g.add_argument("--seed", type=seed_values, nargs="+", default=None, metavar="SEED", help=seed_help)
    g.add_argument(
        "--engine",
        choices=["auto", "fused", "trial"],
        default=d.engine,
        help="fused: compiled loop, many runs at once; trial: torchbearer Trial, any torch.optim optimizer; "
        "auto: fused when it implements every optimizer",
    )
    add_dtype_flag(g)
    g.add_argument(
        "--threads",
        type=count,
        default=None,
        help="fused engine: kernel threads (default: the CPUs this process may use, at most one per run; "
        "NUMBA_NUM_THREADS caps it); the numbers do not depend on it",
    )

    presets = [name for name, pr in PRESETS.items() if setting in pr.settings]
    g = p.add_argument_group("problem (defaults: the paper's Section 5)")
    g.add_argument(
        "--preset",
        choices=presets,
        default="paper",
        help="; ".join(f"{name}: {PRESETS[name].summary}" for name in presets),
    )
    with_c = [f"{name}: {PRESETS[name].default_c:g}" for name in presets if PRESETS[name].default_c is not None]
    g.add_argument(
        "--C", dest="c", type=float, default=None, help=f"the theorem's constant C (default: {', '.join(with_c)})"
    )
    if setting == "stochastic":
        g.add_argument("--delta", type=float, default=None, help="Theorem 3's δ (preset theorem3; default 0.02)")
    g.add_argument("--rare-coef", type=float, default=None, help="slope of the rare function (overrides the preset)")
    g.add_argument(
        "--common-coef", type=float, default=None, help="slope of the common function (overrides the preset)"
    )
    if setting == "online":
        g.add_argument(
            "--period", type=count, default=None, help="rare step when t mod period = 1 (overrides the preset)"
        )
    else:
        g.add_argument("--probability", type=float, default=None, help="probability p of the rare function (overrides)")
    g.add_argument("--x0", type=float, default=0.0, help="starting point x_1")
    g.add_argument("--bounds", type=float, nargs=2, default=[-1.0, 1.0], metavar=("LO", "HI"), help="F = [LO, HI]")

    g = p.add_argument_group("output")
    g.add_argument(
        "--logdir", default=d.logdir, help="TensorBoard root; runs go to LOGDIR/SETTING/RUN_NAME/SPEC[/lr=..][/seed=..]"
    )
    g.add_argument("--run-name", default=None, help="run directory name (default: a timestamp)")
    g.add_argument("--log-every", type=count, default=d.log_every, help="write scalars every N steps (and at T)")
    g.add_argument(
        "--gamma",
        action="store_true",
        help="also log Γ_t = √V_t/α_t − √V_{t−1}/α_{t−1} (the paper's Section 3) and the fraction of steps with "
        "Γ_t < 0, where the effective step size grew (docs/gamma.md)",
    )
    add_output_flags(g)
    add_ray_flags(g)


_REAL_HELP = {
    "logreg": "logistic regression on MNIST-format data, α_t = α/√t",
    "mlp": "784 → 100 ReLU → 10 network on MNIST-format data, constant α",
    "cifarnet": "CIFARNET on CIFAR-10 (or any data set below), constant α",
}


def _add_real_flags(p: argparse.ArgumentParser, model: str) -> None:
    from .realdata.config import MODEL_DEFAULTS, RealConfig
    from .realdata.data import DATA_SETS, ENV

    d, own = RealConfig(), MODEL_DEFAULTS[model]
    g = p.add_argument_group("data")
    g.add_argument("--data", choices=DATA_SETS, default=own["data"], help="which data set")
    g.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help=f"where the data set's files are (default: ${ENV} if set, else ./data, ~/data, ~/.keras/datasets, "
        "/usr/share/datasets, else for mnist the embedded 5,000-digit subset)",
    )
    g = p.add_argument_group("grid (every optimizer × lr × β2 × seed is one run)")
    _add_optimizers_flag(g, d.optimizers)
    g.add_argument(
        "--lr",
        type=lr_values,
        nargs="+",
        default=None,
        metavar="LR",
        help=f"α: values or START:STOP:N, log-spaced (default: {own['lr']:g})",
    )
    g.add_argument("--beta1", type=float, default=None, help="β1 (default: each optimizer's own, 0.9)")
    g.add_argument(
        "--beta2",
        type=float,
        nargs="+",
        default=None,
        metavar="B2",
        help="β2 values, e.g. the paper's grid 0.99 0.999 (default: each optimizer's own, 0.99)",
    )
    g.add_argument(
        "--eps", type=float, default=None, help="ε (default: each optimizer's own; 1e-8 for amsgrad-paper and adamnc)"
    )
    g.add_argument(
        "--weight-decay",
        type=float,
        default=0.0,
        metavar="λ",
        help="weight decay for every optimizer: L2, g ← g + λ·x, as torch.optim's weight_decay",
    )
    g.add_argument(
        "--decoupled-weight-decay",
        action="store_true",
        help="AdamW's form instead, x ← (1 − α_t·λ)·x (adam, the AMSGrads, adamnc, torch.optim.Adam, NAdam…)",
    )
    g.add_argument(
        "--seed",
        type=seed_values,
        nargs="+",
        default=None,
        metavar="SEED",
        help="initial weights, batch order and dropout; values or START:STOP, STOP excluded (default: 0)",
    )
    g = p.add_argument_group("training")
    g.add_argument("--iterations", type=count, default=own["iterations"], help="minibatch iterations per run")
    g.add_argument("--batch-size", type=count, default=d.batch_size, help="minibatch size")
    g.add_argument(
        "--lr-schedule", choices=["constant", "sqrt"], default=own["lr_schedule"], help="α_t = α or α/√t (t 1-based)"
    )
    g.add_argument("--device", choices=["auto", "cpu", "cuda"], default=d.device, help="auto: cuda if available")
    g.add_argument(
        "--threads",
        type=count,
        default=None,
        help="torch CPU threads per run (default: 1, so that the numbers are the same on every machine and on Ray)",
    )
    g.add_argument(
        "--jobs",
        type=count,
        default=None,
        help="runs at once, in worker processes (default: the CPUs this process may use ÷ --threads; 1: one after "
        "another in this process; the numbers are the same whatever it is; CUDA: always 1)",
    )
    g = p.add_argument_group("output")
    g.add_argument("--logdir", default=d.logdir, help="TensorBoard root; runs go to LOGDIR/MODEL/RUN_NAME/SPEC[/..]")
    g.add_argument("--run-name", default=None, help="run directory name (default: a timestamp)")
    g.add_argument("--log-every", type=count, default=d.log_every, help="write the mean training loss every N")
    g.add_argument(
        "--eval-every", type=count, default=d.eval_every, help="test loss and accuracy every N (and at the end)"
    )
    g.add_argument(
        "--gamma",
        action="store_true",
        help="also log, every --log-every, the fraction of coordinates with Γ_t < 0 (the effective step size "
        "grew) and the median growth there (docs/gamma.md)",
    )
    add_output_flags(g)
    add_ray_flags(g)


def real_config_from_args(args: argparse.Namespace):
    from .realdata.config import RealConfig

    return RealConfig(
        model=args.command,
        data=args.data,
        data_dir=args.data_dir,
        optimizers=tuple(args.optimizers),
        lrs=_flatten(args.lr),
        beta1=args.beta1,
        beta2s=None if args.beta2 is None else tuple(args.beta2),
        eps=args.eps,
        weight_decay=args.weight_decay,
        decoupled_weight_decay=args.decoupled_weight_decay,
        gamma=args.gamma,
        seeds=_flatten(args.seed) or (0,),
        iterations=args.iterations,
        batch_size=args.batch_size,
        lr_schedule=args.lr_schedule,
        log_every=args.log_every,
        eval_every=args.eval_every,
        device=args.device,
        threads=args.threads,
        jobs=args.jobs,
        **_output(args),
    )


def _output(args: argparse.Namespace) -> dict:
    """The output fields both kinds of config share (see :func:`amsgrad_repro.values.add_output_flags`)."""
    return {
        "logdir": args.logdir,
        "run_name": args.run_name,
        "overwrite": args.overwrite,
        "progress": args.progress,
        "allow_large": args.allow_large,
        "ray": args.ray,
        "ray_timeout": args.ray_timeout,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description=(
            "Reproduce Reddi, Kale & Kumar, 'On the Convergence of Adam and Beyond' (ICLR 2018), both halves.\n"
            "online, stochastic: the one-dimensional counterexamples of Figure 1 (x_t and R_t/t); logreg, mlp,\n"
            "cifarnet: the real-data comparison of Figure 2 (training and test loss). Every run is logged to\n"
            "TensorBoard (tensorboard --logdir logs) with a summary.json; COMMAND --help lists its flags."
        ),
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser, required=True)
    helps = {
        "online": "f_t(x) = 1010·x if t mod 101 = 1 else −10·x on [−1, 1] (Figure 1, left and centre)",
        "stochastic": "f_t(x) = 1010·x with probability 0.01 else −10·x on [−1, 1] (Figure 1, right)",
    }
    for setting, text in helps.items():
        p = sub.add_parser(setting, help=text, description=text, formatter_class=_Formatter)
        _add_run_flags(p, setting)
    from .realdata.config import FIGURE2

    for model, text in _REAL_HELP.items():
        text += f" ({FIGURE2[model][0]})"
        _add_real_flags(sub.add_parser(model, help=text, description=text, formatter_class=_Formatter), model)
    from . import bench

    text = "time the Trial path against the fused engine (steps/s and their ratio)"
    bench.add_arguments(sub.add_parser("bench", help=text, description=text, formatter_class=_Formatter))
    from . import plot

    text = "figures (PNG, SVG) from run directories: the paper's Figure 1 from an online and a stochastic run"
    plot.add_arguments(sub.add_parser("plot", help=text, description=text, formatter_class=_Formatter))
    from .synthetic import phase

    text = "heat maps of final x and R_T/T over a (β1, β2) grid: where Adam fails on a fixed problem"
    phase.add_arguments(sub.add_parser("phase", help=text, description=text, formatter_class=_Formatter))
    from .verdict import command as verdict

    text = "Reddi's test for any optimizer: converges, fails or undecided on each of the paper's problems"
    verdict.add_arguments(sub.add_parser("verdict", help=text, description=text, formatter_class=_Formatter))
    return parser


def _flatten(groups: list[list] | None) -> tuple | None:
    return None if groups is None else tuple(v for group in groups for v in group)


def config_from_args(args: argparse.Namespace) -> Config:
    seeds = _flatten(args.seed)
    problem = ProblemConfig(
        setting=args.command,
        preset=args.preset,
        c=args.c,
        delta=getattr(args, "delta", None),
        rare_coef=args.rare_coef,
        common_coef=args.common_coef,
        period=getattr(args, "period", None),
        p=getattr(args, "probability", None),
        seed=seeds[0] if seeds else 0,
        x0=args.x0,
        bounds=tuple(args.bounds),
        dtype=args.dtype,
    )
    betas = args.betas or (None, None)
    overrides = {
        "beta1": betas[0],
        "beta2": betas[1],
        "eps": args.eps,
        "momentum": args.momentum,
        "lr_schedule": args.lr_schedule,
        "beta1_schedule": args.beta1_schedule,
        "beta1_decay": args.beta1_decay,
    }
    return Config(
        problem=problem,
        steps=args.steps,
        optimizers=tuple(args.optimizers),
        overrides={k: v for k, v in overrides.items() if v is not None},
        lrs=_flatten(args.lr),
        seeds=seeds,
        log_every=args.log_every,
        gamma=args.gamma,
        threads=args.threads,
        engine=args.engine,
        **_output(args),
    )


def _tool(command: str):
    """The module that runs ``bench``, ``phase`` or ``plot``, imported only when asked for (plain imports, so
    that lint-imports sees them)."""
    if command == "bench":
        from . import bench

        return bench
    if command == "plot":
        from . import plot

        return plot
    if command == "verdict":
        from .verdict import command as verdict

        return verdict
    from .synthetic import phase

    return phase


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status: 0, 2 (bad input, one line on stderr, nothing written),
    130 (Ctrl-C) or 143 (SIGTERM), or 1 (a Ray cluster lost), the last three after writing what was done."""
    for stream in (sys.stdout, sys.stderr):  # a path of non-UTF-8 bytes is printed escaped, never a traceback
        with contextlib.suppress(AttributeError, ValueError):  # a stream that is not a TextIOWrapper (a test's)
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    with handle_signals():
        try:
            if args.command in ("bench", "phase", "plot", "verdict"):
                return _tool(args.command).run(args)
            if args.command in _REAL_HELP:
                from .realdata.experiment import run as run_real

                summary = run_real(real_config_from_args(args))
            else:
                from .synthetic.experiment import run  # here, not at the top: --help needs no kernel or writer

                summary = run(config_from_args(args))
        except UsageError as e:
            print(one_line(str(e), f"{PROG}: error: "), file=sys.stderr)
            return 2
        except (BackendLost, WriteFailed) as e:  # what finished is kept (summary.json says which); the rest not run
            print(one_line(str(e), f"{PROG}: error: "), file=sys.stderr)
            return 1
        except KeyboardInterrupt:  # a stop before anything was written (runs catch it themselves after that)
            print(f"{PROG}: interrupted", file=sys.stderr)
            return exit_code(True)
        except BrokenPipeError:  # `... | head` closed our stdout; what was run is already saved
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush is silent
            return 141  # 128 + SIGPIPE, what a shell reports for a command cut off by head
    counts = summary["runs_by_status"]
    if not summary["interrupted"] and counts.get("failed") and not counts.get("complete"):
        print(f"{PROG}: error: every run failed (each run's error is printed above and in summary.json when kept)",
              file=sys.stderr)  # fmt: skip
        return 1
    return exit_code(summary["interrupted"])


if __name__ == "__main__":
    raise SystemExit(main())
