"""The battery: which problems, β's, step sizes and seeds an optimizer is put through, and how it is run.

Usage::

    from amsgrad_repro.verdict.battery import Battery, load, plan, run_battery

    battery = Battery()                                  # the defaults: 5 problems, 10⁶ steps, lr 1e-3, 1e-2, seeds 0-2
    optimizer = load("torch.optim.AdamW")                # a zoo name, torch.optim.<Class>, module:Class, file.py:Class
    cases = plan(battery, optimizer)                     # every run, named problem/betas/lr=…[/seed=…]
    result = run_battery("torch.optim.AdamW", battery)   # a pure function of its arguments (a task for --jobs, Ray)

The problems (the paper's, :data:`PROBLEMS`) and the β's each is run at:

======================  ==========================================  ===============================================
problem                 what                                        β's (for an optimizer that takes them)
======================  ==========================================  ===============================================
``online``              Section 5: 1010·x once every 101 steps,     the paper's (0.9, 0.99)
                        else −10·x
``stochastic``          Section 5: 1010·x with probability 0.01     the paper's (0.9, 0.99); seeds
``theorem1``            Theorem 1: C·x if t mod 3 = 1, else −x,     the theorem's β1 = 0, β2 = 1/(1+C²) = 0.1
                        C = 3
``theorem2``            Theorem 2: C·x if t mod C = 1, C = 101      the optimizer's own defaults, and (0.9, 0.99)
``theorem3``            Theorem 3: C·x with probability (1+δ)/(C+1) the optimizer's own defaults, and (0.9, 0.99);
                        (C = 101, δ = 0.02)                         seeds
======================  ==========================================  ===============================================

Theorems 2 and 3 hold for "any β1 < √β2": an optimizer's defaults and the paper's values both satisfy it for Adam.
An optimizer without β's runs each problem once per step size, at its own defaults; one whose spec fixes its β's
runs at those. Every run starts at x₁ = 0 on F = [−1, 1], where x* = −1 and the worst point is +1.

How a battery runs: a zoo name goes through the fused engine (every run in one compiled call: seconds); any
other optimizer through the torch engine (:mod:`amsgrad_repro.synthetic.torchloop`: a plain loop proven equal to
the Trial, the runs of one setting as the coordinates of one parameter when that is exact, checked first).

**Importing runs code.** ``module:Class`` imports the module and ``path/to/file.py:Class`` executes the file, as
Python's ``import`` does: whatever the file does at import time happens. That is the point (your optimizer), and
it is done only for a spec you give on the command line or to :func:`load`.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import inspect
import sys
import time
from pathlib import Path

import numpy as np

from ..optimizers import ALIASES, ZOO, finite_number, parse_spec, resolve
from ..runs import UsageError
from ..synthetic.config import ProblemConfig
from ..synthetic.rule import RULE, Rule, judge, log_every_for, overall

#: problem → (setting, preset, the β configurations it is run at)
PROBLEMS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "online": ("online", "paper", ("paper",)),
    "stochastic": ("stochastic", "paper", ("paper",)),
    "theorem1": ("online", "theorem1", ("theorem",)),
    "theorem2": ("online", "theorem2", ("defaults", "paper")),
    "theorem3": ("stochastic", "theorem3", ("defaults", "paper")),
}
#: the paper's Section 5 β's
PAPER_BETAS = (0.9, 0.99)


@dataclasses.dataclass(frozen=True)
class Battery:
    """What every optimizer is put through (the defaults are the default battery)."""

    steps: int = 1_000_000
    lrs: tuple[float | None, ...] = (1e-3, 1e-2)  # None: the optimizer's own lr
    seeds: tuple[int, ...] = (0, 1, 2)
    problems: tuple[str, ...] = tuple(PROBLEMS)
    dtype: str = "float32"
    rule: Rule = RULE

    def describe(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """A loaded spec: how to build it and what it takes."""

    spec: str
    kind: str  # "fused" (a zoo name) or "torch"
    cls: type | None  # the torch.optim.Optimizer subclass ("torch")
    options: dict  # the spec's own options (betas as a pair)
    takes_betas: bool  # the β's are the battery's to set (the optimizer has them and the spec does not fix them)
    default_betas: tuple[float, float] | None  # the optimizer's own β's, where it has them


@dataclasses.dataclass(frozen=True)
class Case:
    """One run of the battery."""

    problem: str
    betas_name: str  # "defaults", "paper", "theorem" or "spec"
    betas: tuple[float, float] | None  # None: the optimizer's own
    lr: float | None  # None: the optimizer's own
    seed: int | None

    @property
    def setting(self) -> str:
        """The optimizer settings it runs at (one param group of the torch engine): β configuration and lr."""
        return f"{self.betas_name}/lr={'own' if self.lr is None else f'{self.lr:g}'}"

    @property
    def name(self) -> str:
        lr = "own" if self.lr is None else f"{self.lr:g}"
        seed = "" if self.seed is None else f"/seed={self.seed}"
        return f"{self.problem}/{self.betas_name}/lr={lr}{seed}"

    def problem_config(self, dtype: str) -> ProblemConfig:
        setting, preset, _ = PROBLEMS[self.problem]
        return ProblemConfig(setting, preset, seed=self.seed or 0, dtype=dtype)


def _import_class(name: str) -> type:
    target, _, attribute = name.rpartition(":")
    try:
        if target.endswith(".py"):
            path = Path(target).expanduser()
            if not path.is_file():
                raise UsageError(f"{name}: {path} is not a file")
            module_name = f"_amsgrad_repro_user_{abs(hash(str(path.resolve())))}"
            spec = importlib.util.spec_from_file_location(module_name, path)
            if spec is None or spec.loader is None:
                raise UsageError(f"{name}: {path} cannot be imported as a Python file")
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module  # a class's pickling (--jobs, Ray) finds it by this name
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except UsageError:
        raise
    except Exception as e:  # the user's module failed to import: say so, in one line
        raise UsageError(f"{name}: importing it failed: {type(e).__name__}: {e}") from None
    cls = getattr(module, attribute, None)
    if cls is None:
        raise UsageError(f"{name}: {target} has no attribute {attribute!r}")
    return cls


def load(spec: str, extra: dict | None = None) -> Optimizer:
    """The optimizer a spec names, checked: a zoo name, ``torch.optim.<Class>``, ``package.module:Class`` or
    ``path/to/file.py:Class``, with ``,key=value`` options (numbers, ``true``/``false``; ``beta1``/``beta2`` set a
    ``betas`` pair) and ``extra`` keyword arguments beside them (:func:`amsgrad_repro.verdict.check`'s). A class
    that is not a ``torch.optim.Optimizer``, needs a closure, or fails a dry step is a :class:`UsageError`."""
    name, options = _parse(spec)
    options |= extra or {}
    if ALIASES.get(name, name) in ZOO:
        choice = _resolve(spec, {})
        fixed = {"beta1", "beta2"} & set(options)
        both = "beta1" in choice.hp and "beta2" in choice.hp  # AdamNC has β1 only (its β2t is 1 − 1/t)
        takes = both and not fixed
        betas = (choice.hp["beta1"], choice.hp["beta2"]) if both else None
        return Optimizer(spec, "fused", None, options, takes, betas)
    if name.startswith("torch.optim.") and ":" not in name:
        import torch

        cls = getattr(torch.optim, name[len("torch.optim.") :], None)
        if cls is None:
            raise UsageError(f"torch.optim has no optimizer class {name[len('torch.optim.') :]!r}")
    elif ":" in name:
        cls = _import_class(name)
    else:
        raise UsageError(
            f"unknown optimizer {name!r}: give a zoo name ({', '.join(ZOO)}), torch.optim.<Class>, "
            "package.module:Class or path/to/file.py:Class"
        )
    import torch

    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise UsageError(f"{name} is not a torch.optim.Optimizer subclass")
    kwargs = dict(options)
    if "beta1" in kwargs or "beta2" in kwargs:
        if not {"beta1", "beta2"} <= set(kwargs):
            raise UsageError(f"{spec}: give both beta1 and beta2 (they set the pair betas)")
        kwargs["betas"] = (kwargs.pop("beta1"), kwargs.pop("beta2"))
    default_betas = _default_betas(cls)
    _dry_step(spec, cls, kwargs)
    return Optimizer(spec, "torch", cls, kwargs, default_betas is not None and "betas" not in kwargs, default_betas)


def _default_betas(cls: type) -> tuple[float, float] | None:
    """The ``betas`` pair a class's ``__init__`` defaults to, looked up through the classes it passes
    ``**kwargs`` on to (a subclass ``__init__(self, params, **kwargs)`` of Adam has Adam's); None if it has none or
    it is not a pair (three β's: the battery then runs it at its own)."""
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            parameters = inspect.signature(init).parameters
        except (TypeError, ValueError):
            return None
        if "betas" in parameters:
            default = parameters["betas"].default
            return tuple(default) if isinstance(default, (tuple, list)) and len(default) == 2 else None
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            return None
    return None


def _foreign_value(key: str, text: str) -> object:
    """An option of a class outside the zoo: ``true``/``false``, an int, or a finite float."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    value = finite_number(key, text, "a number (or true/false)")
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def _parse(spec: str) -> tuple[str, dict]:
    """A zoo spec as the other commands read it (:func:`~amsgrad_repro.optimizers.parse_spec`); any other spec's
    options the same way, their values as numbers or ``true``/``false``."""
    name = spec.split(",")[0]
    try:
        return parse_spec(spec, None if ALIASES.get(name, name) in ZOO else _foreign_value)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _resolve(spec: str, overrides: dict):
    try:
        return resolve(spec, overrides)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _dry_step(spec: str, cls: type, kwargs: dict) -> None:
    """Build the optimizer on one 0-d parameter and take a step with gradient 1, as the battery will."""
    import torch

    from ..synthetic.torchloop import build

    param = torch.nn.Parameter(torch.zeros(()))
    try:
        opt = build(cls, [param], {"lr": 1e-3} | kwargs)
    except Exception as e:
        raise UsageError(f"{spec}: cannot be built: {type(e).__name__}: {e}") from None
    param.grad = torch.ones(())
    try:
        opt.step()
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"{spec} cannot run here (a dry step failed: {first})") from None


def plan(battery: Battery, optimizer: Optimizer) -> list[Case]:
    """Every run of ``battery`` for ``optimizer``, in order: problem, β configuration, lr, seed."""
    own_lr = "lr" in optimizer.options
    lrs = (None,) if own_lr else battery.lrs
    cases = []
    for problem in battery.problems:
        setting, preset, configs = PROBLEMS[problem]
        if not optimizer.takes_betas:
            configs = ("spec",) if {"beta1", "beta2", "betas"} & set(optimizer.options) else ("defaults",)
        named = []
        for config in configs:
            if config == "paper":
                betas = PAPER_BETAS
            elif config == "theorem":
                betas = ProblemConfig(setting, preset).theorem_betas()
            else:
                betas = None
            resolved = optimizer.default_betas if betas is None else betas
            if any(resolved == r for _, r in named):  # the zoo's defaults are the paper's: run them once
                continue
            named.append((config, resolved))
            for lr in lrs:
                for seed in battery.seeds if setting == "stochastic" else (None,):
                    cases.append(Case(problem, config, betas, lr, seed))
    return cases


def parts(battery: Battery, optimizer: Optimizer, count: int = 2) -> list[tuple[str, ...] | None]:
    """How an optimizer's battery is cut into at most ``count`` tasks (one a core): one for a zoo name (the fused
    engine runs it all in seconds); for the torch engine, its settings (a β configuration and an lr:
    :attr:`Case.setting`) in ``count`` parts of as equal a number as can be. A step of the torch engine costs one
    ``step()`` call, whose price is a fixed part plus one per param group (a setting), whatever the runs: so
    the parts are balanced by settings, and fewer parts cost less in all (the fixed part is paid once a part).
    The numbers do not depend on the cut: every layout is checked equal to one optimizer a run
    (:func:`~amsgrad_repro.synthetic.torchloop.layout_for`)."""
    if optimizer.kind == "fused":
        return [None]
    settings = list(dict.fromkeys(c.setting for c in plan(battery, optimizer)))
    count = max(1, min(count, len(settings)))
    size, extra = divmod(len(settings), count)
    out, start = [], 0
    for k in range(count):
        end = start + size + (k < extra)
        out.append(tuple(settings[start:end]))
        start = end
    return out


def run_battery(spec: str, battery: Battery, stop=None, on_window=None, extra: dict | None = None,
                settings: tuple[str, ...] | None = None) -> dict:  # fmt: skip
    """Put ``spec`` through ``battery`` (only the ``settings`` named, if given: a part of it, :func:`parts`):
    every case's logged points and verdict, and each problem's. A pure function of its arguments (the same
    numbers in this process, a ``--jobs`` worker or a Ray task). ``stop()`` is asked between windows (the torch
    engine; the fused one stops on a signal itself); ``on_window(n)`` is told after each window that n more
    run-steps are done (a progress bar's unit)."""
    optimizer = load(spec, extra)
    cases = [c for c in plan(battery, optimizer) if settings is None or c.setting in settings]
    if on_window is not None:
        on_window = functools.partial(_run_steps, on_window, len(cases))
    log_every = log_every_for(battery.steps)
    start = time.perf_counter()
    if optimizer.kind == "fused":
        ts, xs, rs, done, interrupted, layout = _run_fused(optimizer, cases, battery, log_every, on_window)
    else:
        ts, xs, rs, done, interrupted, layout = _run_torch(optimizer, cases, battery, log_every, stop, on_window)
    judged = [
        judge(ts, xs[k], rs[k], -1.0, -1.0, 1.0, battery.steps, battery.rule) if done == battery.steps else None
        for k in range(len(cases))
    ]
    return {
        "spec": spec,
        "engine": optimizer.kind,
        "layout": layout,
        "cases": [c.name for c in cases],
        "hyperparameters": [{"lr": c.lr, "betas": c.betas, "seed": c.seed} for c in cases],
        "ts": ts,
        "xs": xs,
        "rs": rs,
        "steps_done": done,
        "interrupted": interrupted,
        "judged": [None if j is None else j.describe() for j in judged],
        "problems": problem_verdicts(battery, cases, judged),
        "seconds": time.perf_counter() - start,
    }


def _run_steps(on_window, runs: int, steps: int) -> None:
    """An engine's window of ``steps`` steps of ``runs`` runs, told as run-steps."""
    on_window(steps * runs)


def problem_verdicts(battery: Battery, cases: list[Case], judged: list) -> dict:
    """Each problem's verdict (:func:`~amsgrad_repro.synthetic.rule.overall`) from its judged runs (``None``: not
    judged)."""
    out = {}
    for problem in battery.problems:
        members = [j for c, j in zip(cases, judged, strict=True) if c.problem == problem and j is not None]
        if members:
            out[problem] = overall(members)
    return out


def merge(battery: Battery, spec: str, pieces: list[dict]) -> dict:
    """The results of an optimizer's parts (:func:`parts`) as one, in plan order, with its problems' verdicts."""
    optimizer = load(spec)
    order = {c.name: k for k, c in enumerate(plan(battery, optimizer))}
    rows = sorted(((order[name], i, k) for i, piece in enumerate(pieces) for k, name in enumerate(piece["cases"])))
    rows = [(o, pieces[i], k) for o, i, k in rows]
    ts = min((p["ts"] for p in pieces), key=len)  # parts a signal stopped at different steps: the common part
    cases = [c for c in plan(battery, optimizer) if c.name in {name for p in pieces for name in p["cases"]}]
    judged = [piece["judged"][k] for _, piece, k in rows]
    return {
        "spec": spec,
        "engine": pieces[0]["engine"],
        "layout": "/".join(dict.fromkeys(p["layout"] for p in pieces)),
        "cases": [piece["cases"][k] for _, piece, k in rows],
        "hyperparameters": [piece["hyperparameters"][k] for _, piece, k in rows],
        "ts": ts,
        "xs": np.stack([piece["xs"][k][: len(ts)] for _, piece, k in rows]),
        "rs": np.stack([piece["rs"][k][: len(ts)] for _, piece, k in rows]),
        "steps_done": min(p["steps_done"] for p in pieces),
        "interrupted": any(p["interrupted"] for p in pieces),
        "judged": judged,
        "problems": problem_verdicts(battery, cases, [None if j is None else _Judged(j) for j in judged]),
        "seconds": sum(p["seconds"] for p in pieces),
    }


class _Judged:
    """A judged run read back from its description (what :func:`~amsgrad_repro.synthetic.rule.overall` reads:
    the verdict)."""

    def __init__(self, described: dict) -> None:
        self.verdict = described["verdict"]


def _run_fused(optimizer: Optimizer, cases: list[Case], battery: Battery, log_every: int, on_window):
    from ..synthetic.fused import FusedRun, simulate

    configs = sorted({(c.problem, c.seed or 0) for c in cases})
    problems = [_case_config(p, s, battery.dtype).functions() for p, s in configs]
    runs = []
    for c in cases:
        overrides = {"lr": c.lr} | ({} if c.betas is None else {"beta1": c.betas[0], "beta2": c.betas[1]})
        runs.append(FusedRun(_resolve(optimizer.spec, overrides), configs.index((c.problem, c.seed or 0))))
    logged: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    result = simulate(problems, runs, battery.steps, log_every=log_every, dtype=battery.dtype, on_window=on_window,
                      on_log=lambda t, x, r: logged.append((t.copy(), x.astype(np.float64), r.copy())))  # fmt: skip
    ts, xs, rs = _join(logged, len(runs))
    return ts, xs, rs, result.steps_done, result.interrupted, "fused"


def _case_config(problem: str, seed: int, dtype: str) -> ProblemConfig:
    setting, preset, _ = PROBLEMS[problem]
    return ProblemConfig(setting, preset, seed=seed, dtype=dtype)


def _run_torch(optimizer: Optimizer, cases: list[Case], battery: Battery, log_every: int, stop, on_window):
    from ..synthetic.torchloop import TorchRun, run_torch

    settings: list[dict] = []
    runs = []
    for c in cases:
        group = dict(optimizer.options)
        if c.lr is not None:
            group["lr"] = c.lr
        if c.betas is not None:
            group["betas"] = c.betas
        if group not in settings:
            settings.append(group)
        runs.append(TorchRun(c.problem_config(battery.dtype).functions(), settings.index(group)))
    result = run_torch(optimizer.cls, {}, runs, settings, battery.steps, log_every, stop, on_window)
    ts, xs, rs = result.logged
    return ts, xs, rs, result.steps_done, result.interrupted, result.layout


def _join(logged, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not logged:
        return np.zeros(0, np.int64), np.zeros((n, 0)), np.zeros((n, 0))
    return (
        np.concatenate([t for t, _, _ in logged]),
        np.concatenate([x for _, x, _ in logged], axis=1),
        np.concatenate([r for _, _, r in logged], axis=1),
    )
