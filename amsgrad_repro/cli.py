"""Command line: ``python -m amsgrad_repro {online,stochastic} [flags]`` (also installed as ``amsgrad-repro``).

Usage::

    python -m amsgrad_repro online --steps 20000 --run-name quick
    python -m amsgrad_repro stochastic --seed 3 --optimizers adam amsgrad torch.optim.SGD
    python -m amsgrad_repro online --help          # every flag with its default
    python -m amsgrad_repro bench                  # Trial vs fused engine, steps per second

Bad input prints one line on stderr and exits with status 2; nothing is written. Ctrl-C exits with 130 after
writing what was done.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .experiment import Config, ProblemConfig, UsageError, run
from .optimizers import NAMED, Hyper

PROG = "amsgrad-repro"


class _Parser(argparse.ArgumentParser):
    """argparse, but an error is one line (no usage block) and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


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


def _count(text: str) -> int:
    """An integer that may be written 10_000_000 or 1e7."""
    try:
        return int(text.replace("_", ""))
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not value.is_integer():
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}")
    return int(value)


def _add_run_flags(p: argparse.ArgumentParser, setting: str) -> None:
    d = Config()
    g = p.add_argument_group("run")
    g.add_argument("--steps", type=_count, default=d.steps, help="number of steps T (t = 1..T)")
    g.add_argument(
        "--optimizers",
        nargs="+",
        default=list(d.optimizers),
        metavar="NAME",
        help=f"one run each, drawn in one chart: {', '.join(NAMED)}, or torch.optim.<Class> (built with --lr only)",
    )
    g.add_argument("--lr", type=float, default=d.hyper.lr, help="step size α (constant)")
    g.add_argument("--betas", type=float, nargs=2, default=list(d.hyper.betas), metavar=("B1", "B2"), help="β1 β2")
    g.add_argument("--eps", type=float, default=d.hyper.eps, help="ε, added after the square root (torch's place)")
    seed_help = (
        "seed of the stochastic stream" if setting == "stochastic" else "unused: the online problem is deterministic"
    )
    g.add_argument("--seed", type=_count, default=0, help=seed_help)
    g.add_argument(
        "--engine",
        choices=["auto", "fused", "trial"],
        default=d.engine,
        help="fused: compiled loop, many runs at once; trial: torchbearer Trial, any torch.optim optimizer; "
        "auto: fused when it implements every optimizer",
    )

    g = p.add_argument_group("problem constants (defaults: the paper's)")
    g.add_argument("--rare-coef", type=float, default=1010.0, help="slope of the rare function")
    g.add_argument("--common-coef", type=float, default=-10.0, help="slope of the common function")
    if setting == "online":
        g.add_argument("--period", type=_count, default=101, help="rare step when t mod period = 1")
    else:
        g.add_argument("--probability", type=float, default=0.01, help="probability p of the rare function")
    g.add_argument("--x0", type=float, default=0.0, help="starting point x_1")
    g.add_argument("--bounds", type=float, nargs=2, default=[-1.0, 1.0], metavar=("LO", "HI"), help="F = [LO, HI]")

    g = p.add_argument_group("output")
    g.add_argument("--logdir", default=d.logdir, help="TensorBoard root; runs go to LOGDIR/SETTING/RUN_NAME/OPTIMIZER")
    g.add_argument("--run-name", default=None, help="run directory name (default: a timestamp)")
    g.add_argument("--log-every", type=_count, default=d.log_every, help="write scalars every N steps (and at T)")
    g.add_argument("--overwrite", action="store_true", help="replace an existing run directory of the same name")
    g.add_argument("--no-progress", action="store_true", help="no progress bar (default: a bar on a terminal)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description=(
            "Reproduce the synthetic experiments of Reddi, Kale & Kumar, 'On the Convergence of Adam and Beyond'.\n"
            "Runs each optimizer on the chosen problem and logs x_t and R_t/t to TensorBoard."
        ),
        formatter_class=_Formatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser, required=True)
    helps = {
        "online": "f_t(x) = 1010·x if t mod 101 = 1 else −10·x on [−1, 1] (Figure 1, left and centre)",
        "stochastic": "f_t(x) = 1010·x with probability 0.01 else −10·x on [−1, 1] (Figure 1, right)",
    }
    for setting, text in helps.items():
        p = sub.add_parser(setting, help=text, description=text, formatter_class=_Formatter)
        _add_run_flags(p, setting)
    from . import bench

    text = "time the Trial path against the fused engine (steps/s and their ratio)"
    bench.add_arguments(sub.add_parser("bench", help=text, description=text, formatter_class=_Formatter))
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    problem = ProblemConfig(
        setting=args.command,
        rare_coef=args.rare_coef,
        common_coef=args.common_coef,
        period=getattr(args, "period", 101),
        p=getattr(args, "probability", 0.01),
        seed=args.seed,
        x0=args.x0,
        bounds=tuple(args.bounds),
    )
    return Config(
        problem=problem,
        steps=args.steps,
        optimizers=tuple(args.optimizers),
        hyper=Hyper(lr=args.lr, betas=tuple(args.betas), eps=args.eps),
        log_every=args.log_every,
        logdir=args.logdir,
        run_name=args.run_name,
        overwrite=args.overwrite,
        engine=args.engine,
        progress=False if args.no_progress else None,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "bench":
        from . import bench

        return bench.run(args)
    try:
        summary = run(config_from_args(args))
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted before the run started; nothing written", file=sys.stderr)
        return 130
    return 130 if summary["interrupted"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
