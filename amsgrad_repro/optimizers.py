"""The optimizer zoo by name, as the CLI and both engines see it.

Usage::

    from amsgrad_repro.optimizers import resolve
    choice = resolve("momentum,lr=0.01,momentum=0.5")      # name, then per-optimizer options
    choice = resolve("adam", {"lr": 1e-2})                  # invocation-wide defaults for the keys it takes
    opt = choice.build(model.parameters())                  # the Trial's optimizer
    choice.label, choice.hp                                 # run name, resolved hyperparameters

A spec is ``NAME`` or ``NAME,key=value,key=value``; the spec as typed is the run's name (its directory and
TensorBoard run). Invocation-wide values (the CLI's ``--lr``, ``--betas``, ``--eps``, ``--momentum``,
``--lr-schedule``, ``--beta1-schedule``, ``--beta1-decay``) apply to every optimizer that takes that key, and a
spec's own options override them.

In the Trial engine each name is its ``torch.optim`` class wherever torch has the algorithm, and one of ours
(:mod:`amsgrad_repro.algorithms`) otherwise; the fused engine implements every name (not ``torch.optim.<Class>``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .schedules import BETA1_SCHEDULES, LR_SCHEDULES

if TYPE_CHECKING:
    import torch

    Params = Iterable[torch.nn.Parameter]

# torch is imported when an optimizer is built (the Trial engine), not before: naming, resolving and checking a
# spec needs none of it, so the fused engine's commands start without torch.


def _optim():
    """``torch.optim``, imported on first use."""
    import torch

    return torch.optim


def _algorithms():
    """:mod:`amsgrad_repro.algorithms` (torch optimizers of ours), imported on first use."""
    from . import algorithms

    return algorithms


#: every hyperparameter key: (type, check, description)
KEYS: dict[str, tuple[type, Callable[[object], bool], str]] = {
    "lr": (float, lambda v: math.isfinite(v) and v > 0, "step size α > 0"),
    "beta1": (float, lambda v: 0 <= v < 1, "β1 in [0, 1)"),
    "beta2": (float, lambda v: 0 <= v < 1, "β2 in [0, 1)"),
    "eps": (float, lambda v: math.isfinite(v) and v >= 0, "ε ≥ 0"),
    "momentum": (float, lambda v: 0 <= v < 1, "momentum μ in [0, 1)"),
    "alpha": (float, lambda v: 0 <= v < 1, "RMSprop's smoothing α in [0, 1)"),
    "momentum_decay": (float, lambda v: math.isfinite(v) and v >= 0, "NAdam's ψ ≥ 0"),
    "lr_schedule": (str, lambda v: v in LR_SCHEDULES, f"one of {', '.join(LR_SCHEDULES)}"),
    "beta1_schedule": (str, lambda v: v in BETA1_SCHEDULES, f"one of {', '.join(BETA1_SCHEDULES)}"),
    "beta1_decay": (float, lambda v: 0 < v <= 1, "λ in (0, 1] for beta1_schedule=exp"),
}

_SCHEDULES = {"lr_schedule": "constant", "beta1_schedule": "constant", "beta1_decay": 1.0}
_BETAS = {"beta1": 0.9, "beta2": 0.99}


def _constant_schedules(hp: Mapping) -> bool:
    return hp["lr_schedule"] == "constant" and hp["beta1_schedule"] == "constant"


def _ours(hp: Mapping) -> dict:
    return {k: hp[k] for k in _SCHEDULES}


def _adam(amsgrad: bool) -> Callable[[Params, Mapping], torch.optim.Optimizer]:
    def build(params: Params, hp: Mapping) -> torch.optim.Optimizer:
        from .algorithms import AdaptiveMoment, AMSGrad

        betas = (hp["beta1"], hp["beta2"])
        if _constant_schedules(hp) and hp["eps"] > 0:
            return _optim().Adam(params, lr=hp["lr"], betas=betas, eps=hp["eps"], amsgrad=amsgrad)
        # ε = 0: ours, bit for bit torch's update but for a zero second moment, which does not move instead of
        # 0/0 = NaN (amsgrad_repro.algorithms._update; the fused engine does the same)
        if amsgrad:
            return AMSGrad(params, hp["lr"], betas, hp["eps"], variant="pytorch", **_ours(hp))
        return AdaptiveMoment(params, hp["lr"], betas, hp["eps"], **_ours(hp))

    return build


def _amsgrad(variant: str) -> Callable[[Params, Mapping], torch.optim.Optimizer]:
    def build(params: Params, hp: Mapping) -> torch.optim.Optimizer:
        from .algorithms import AMSGrad

        return AMSGrad(params, hp["lr"], (hp["beta1"], hp["beta2"]), hp["eps"], variant=variant, **_ours(hp))

    return build


@dataclass(frozen=True)
class ZooEntry:
    """A named optimizer: its hyperparameters with defaults, and how the Trial builds it."""

    name: str
    summary: str
    defaults: dict[str, object]
    build_torch: Callable[[Params, Mapping], torch.optim.Optimizer]
    trial_class: str  # what the Trial engine runs, for --help and the README
    display: str = ""  # the name legends use (optimizer and variant)

    def __reduce__(self):
        """Pickled by name (its builders are closures): a worker process finds the same entry in its own ZOO."""
        return _zoo_entry, (self.name,)


def _zoo_entry(name: str) -> ZooEntry:
    return ZOO[name]


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in [
        ZooEntry(
            "sgd",
            "x ← x − α·g",
            {"lr": 1e-3},
            lambda p, h: _optim().SGD(p, lr=h["lr"]),
            "torch.optim.SGD",
            display="SGD",
        ),
        ZooEntry(
            "momentum",
            "b ← μ·b + g; x ← x − α·b",
            {"lr": 1e-3, "momentum": 0.9},
            lambda p, h: _optim().SGD(p, lr=h["lr"], momentum=h["momentum"]),
            "torch.optim.SGD(momentum=μ)",
            display="SGD + momentum",
        ),
        ZooEntry(
            "nesterov",
            "b ← μ·b + g; x ← x − α·(g + μ·b)",
            {"lr": 1e-3, "momentum": 0.9},
            lambda p, h: _optim().SGD(p, lr=h["lr"], momentum=h["momentum"], nesterov=True),
            "torch.optim.SGD(momentum=μ, nesterov=True)",
            display="SGD + Nesterov momentum",
        ),
        ZooEntry(
            "adagrad",
            "s ← s + g²; x ← x − α·g/(√s + ε)",
            {"lr": 1e-3, "eps": 1e-10},
            lambda p, h: _optim().Adagrad(p, lr=h["lr"], eps=h["eps"]),
            "torch.optim.Adagrad",
            display="Adagrad",
        ),
        ZooEntry(
            "rmsprop",
            "s ← α·s + (1−α)·g²; x ← x − lr·g/(√s + ε)",
            {"lr": 1e-3, "alpha": 0.99, "eps": 1e-8},
            lambda p, h: _optim().RMSprop(p, lr=h["lr"], alpha=h["alpha"], eps=h["eps"]),
            "torch.optim.RMSprop",
            display="RMSprop",
        ),
        ZooEntry(
            "adam",
            "bias-corrected Adam (torch's)",
            {"lr": 1e-3, **_BETAS, "eps": 1e-8, **_SCHEDULES},
            _adam(False),
            "torch.optim.Adam (AdaptiveMoment with a schedule or ε = 0)",
            display="Adam",
        ),
        ZooEntry(
            "adamax",
            "u ← max(β2·u, |g| + ε); x ← x − α/(1−β1^t)·m/u",
            {"lr": 1e-3, **_BETAS, "eps": 1e-8},
            lambda p, h: _optim().Adamax(p, lr=h["lr"], betas=(h["beta1"], h["beta2"]), eps=h["eps"]),
            "torch.optim.Adamax",
            display="Adamax",
        ),
        ZooEntry(
            "nadam",
            "Adam with Nesterov momentum and μ_t = β1·(1 − ½·0.96^{tψ})",
            {"lr": 1e-3, **_BETAS, "eps": 1e-8, "momentum_decay": 4e-3},
            lambda p, h: _optim().NAdam(
                p, lr=h["lr"], betas=(h["beta1"], h["beta2"]), eps=h["eps"], momentum_decay=h["momentum_decay"]
            ),
            "torch.optim.NAdam",
            display="NAdam",
        ),
        ZooEntry(
            "amsgrad-pytorch",
            "torch's AMSGrad: max of raw v, then bias correction",
            {"lr": 1e-3, **_BETAS, "eps": 1e-8, **_SCHEDULES},
            _adam(True),
            "torch.optim.Adam(amsgrad=True) (AMSGrad(variant='pytorch') with a schedule or ε = 0)",
            display="AMSGrad (PyTorch variant)",
        ),
        ZooEntry(
            "amsgrad-paper",
            "Algorithm 2: max of raw v, no bias correction, ε = 0",
            {"lr": 1e-3, **_BETAS, "eps": 0.0, **_SCHEDULES},
            _amsgrad("paper"),
            "AMSGrad(variant='paper')",
            display="AMSGrad (paper, Alg. 2)",
        ),
        ZooEntry(
            "amsgrad-corrected",
            "bias-correct v, then max (optax)",
            {"lr": 1e-3, **_BETAS, "eps": 1e-8, **_SCHEDULES},
            _amsgrad("corrected"),
            "AMSGrad(variant='corrected')",
            display="AMSGrad (corrected-max variant)",
        ),
        ZooEntry(
            "adamnc",
            "β2t = 1 − 1/t, no max, no bias correction, ε = 0",
            {"lr": 1e-3, "beta1": 0.9, "eps": 0.0, **_SCHEDULES},
            lambda p, h: _algorithms().AdamNC(p, h["lr"], h["beta1"], h["eps"], **_ours(h)),
            "AdamNC",
            display="AdamNC",
        ),
    ]
}

#: other names for zoo entries
ALIASES = {"amsgrad": "amsgrad-pytorch"}

_TORCH_PREFIX = "torch.optim."


@dataclass(frozen=True)
class Choice:
    """A resolved spec: the run's label, the zoo entry (None for ``torch.optim.<Class>``) and hyperparameters."""

    label: str
    name: str
    hp: dict[str, object] = field(default_factory=dict)
    entry: ZooEntry | None = None
    torch_class: type | None = None

    @property
    def fused(self) -> bool:
        """Whether the fused engine implements it (every zoo name does)."""
        return self.entry is not None

    def build(self, params: Params) -> torch.optim.Optimizer:
        """The optimizer the Trial engine runs."""
        if self.entry is not None:
            return self.entry.build_torch(params, self.hp)
        return self.torch_class(params, **self.hp)

    def describe(self) -> dict:
        return {"optimizer": self.name, **self.hp}


def finite_number(key: str, text: str, what: str = "a number") -> float:
    """An option's value as a finite float; ValueError ``key='text' is not <what>`` otherwise."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{key}={text!r} is not {what}") from None
    if not math.isfinite(value):
        raise ValueError(f"{key}={text!r}: hyperparameters must be finite")
    return value


def _parse_value(key: str, text: str) -> object:
    kind = KEYS[key][0] if key in KEYS else float
    return text if kind is str else finite_number(key, text)


def parse_spec(spec: str, value: Callable[[str, str], object] | None = None) -> tuple[str, dict[str, object]]:
    """``"sgd,lr=0.1"`` → ``("sgd", {"lr": 0.1})``. ``value(key, text)`` reads each option's value (default: the
    zoo's typed keys, :data:`KEYS`; ``verdict`` passes its own for classes outside the zoo) and raises ValueError."""
    read = _parse_value if value is None else value
    name, *options = spec.split(",")
    if not name:
        raise ValueError(f"optimizer spec {spec!r} has no name")
    parsed: dict[str, object] = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"optimizer option {option!r} in {spec!r} is not key=value")
        if key in parsed:
            raise ValueError(f"optimizer option {key!r} is given twice in {spec!r}")
        try:
            parsed[key] = read(key, value)
        except ValueError as e:
            raise ValueError(f"{spec.split(',')[0]}: {e}") from None
    return name, parsed


def unused_overrides(choices: Iterable[Choice], overrides: Mapping[str, object]) -> list[str]:
    """The keys of ``overrides`` (given, not None) that none of ``choices`` takes: flags that would be ignored
    without a word (``--betas`` with only ``sgd``). Both wings refuse them."""
    choices = list(choices)
    return sorted(k for k, v in overrides.items() if v is not None and not any(k in c.hp for c in choices))


def canonical(spec: str) -> str:
    """The spec with an alias replaced by the name it stands for (``amsgrad`` → ``amsgrad-pytorch``), so that
    repeats can be found before two runs of one optimizer are made under two names."""
    name, sep, rest = spec.partition(",")
    return ALIASES.get(name, name) + sep + rest


def resolve(spec: str, overrides: Mapping[str, object] | None = None) -> Choice:
    """The :class:`Choice` for ``spec``, with invocation-wide ``overrides`` applied to the keys the optimizer
    takes (None values are ignored). Raises ``ValueError`` with one line saying what is wrong."""
    name, options = parse_spec(spec)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    name = ALIASES.get(name, name)
    if name in ZOO:
        entry = ZOO[name]
        unknown = sorted(set(options) - set(entry.defaults))
        if unknown:
            raise ValueError(f"{name} has no option {', '.join(unknown)} (it takes {', '.join(entry.defaults)})")
        hp = dict(entry.defaults)
        hp.update({k: v for k, v in overrides.items() if k in hp})
        hp.update(options)
        for key, value in hp.items():
            kind, check, text = KEYS[key]
            if not isinstance(value, kind) and not (kind is float and isinstance(value, int)):
                raise ValueError(f"{spec}: {key} must be {text}, got {value!r}")
            if kind is float:
                value = hp[key] = float(value)
            if not check(value):
                raise ValueError(f"{spec}: {key} must be {text}, got {value!r}")
        if hp.get("beta1_decay", 1.0) != 1.0 and hp.get("beta1_schedule") != "exp":
            raise ValueError(f"{spec}: beta1_decay (λ) is used only with beta1_schedule=exp (--beta1-schedule exp)")
        choice = Choice(spec, name, hp, entry=entry)
    elif name.startswith(_TORCH_PREFIX):
        import torch

        cls = getattr(torch.optim, name[len(_TORCH_PREFIX) :], None)
        if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer) and cls is not torch.optim.Optimizer):
            raise ValueError(f"torch.optim has no optimizer class {name[len(_TORCH_PREFIX) :]!r}")
        hp = {"lr": float(overrides["lr"])} if "lr" in overrides else {}
        hp.update(options)
        for key, value in hp.items():  # the keys the zoo knows get the zoo's range checks (lr=inf, momentum=2)
            if key in KEYS and KEYS[key][0] is float and not KEYS[key][1](value):
                raise ValueError(f"{spec}: {key} must be {KEYS[key][2]}, got {value!r}")
        choice = Choice(spec, name, hp, torch_class=cls)
    else:
        known = ", ".join([*ZOO, *ALIASES])
        raise ValueError(f"unknown optimizer {name!r}: choose from {known}, or torch.optim.<Class>")
    if choice.entry is None:  # a torch.optim class: let its own checks speak, then take one dry step, so a
        # class that cannot run here (LBFGS needs a closure, SparseAdam sparse gradients) is refused before
        # anything is written (zoo values are checked above; building a first torch optimizer costs ~1.5 s of
        # imports, which the fused engine never needs)
        import torch

        param = torch.nn.Parameter(torch.zeros(()))
        try:
            opt = choice.build([param])
        except (ValueError, TypeError) as e:
            raise ValueError(f"{spec}: {e}") from None
        param.grad = torch.ones(())
        try:
            opt.step()
        except Exception as e:  # any failure of a dry step means it cannot run here
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"{spec} cannot run here (a dry step failed: {first})") from None
    return choice
