"""Reddi's test for any optimizer: does it fall into the trap the paper's counterexamples set for Adam?

Usage::

    from amsgrad_repro.verdict import check

    verdicts = check("torch.optim.AdamW")                  # {"online": "fails", "stochastic": "fails", ...}
    verdicts = check(MyOptimizer, lr=1e-2, steps=100_000)  # a class: a torch.optim.Optimizer subclass
    assert check(MyAMSGrad, problems=("online",))["online"] != "fails"   # a test in an optimizer library's CI

The command is ``python -m amsgrad_repro verdict --optimizers SPEC…`` (:mod:`.command`); the battery, what it
runs and how, is :mod:`.battery`; the rule that decides a verdict is :mod:`amsgrad_repro.synthetic.rule` (beside
the problems: ``phase --verdict`` judges its cells by it too). docs/verdict.md has the table of verdicts for 40+
optimizers and the command that made it.
"""

from __future__ import annotations

from ..synthetic.rule import RULE, VERDICTS, Rule, judge, overall
from .battery import PROBLEMS, Battery, load, plan, run_battery

__all__ = [
    "PROBLEMS",
    "RULE",
    "VERDICTS",
    "Battery",
    "Rule",
    "check",
    "judge",
    "load",
    "overall",
    "plan",
    "run_battery",
]


def check(
    optimizer: str | type,
    *,
    steps: int = Battery.steps,
    lrs: tuple[float | None, ...] = Battery.lrs,
    seeds: tuple[int, ...] = Battery.seeds,
    problems: tuple[str, ...] = Battery.problems,
    dtype: str = "float32",
    **options: float,
) -> dict[str, str]:
    """Each problem's verdict for ``optimizer`` ("converges", "fails" or "undecided":
    :mod:`amsgrad_repro.synthetic.rule`).

    ``optimizer`` is a spec the command takes (a zoo name, ``torch.optim.<Class>``, ``module:Class``,
    ``file.py:Class``) or a ``torch.optim.Optimizer`` subclass importable by its module and name; ``options`` are
    its keyword arguments (``beta1``/``beta2`` set ``betas``). Raises ``ValueError`` (a
    :class:`~amsgrad_repro.runs.UsageError`) for an optimizer that cannot run here. Nothing is written."""
    if isinstance(optimizer, type):
        optimizer = f"{optimizer.__module__}:{optimizer.__qualname__}"
    battery = Battery(steps, tuple(lrs), tuple(seeds), tuple(problems), dtype)
    result = run_battery(optimizer, battery, extra=options)
    return {problem: v["verdict"] for problem, v in result["problems"].items()}
