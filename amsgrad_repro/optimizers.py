"""Optimizers by name, as the CLI and both engines see them.

Usage::

    from amsgrad_repro.optimizers import resolve, Hyper
    spec = resolve("amsgrad")
    opt = spec.build(model.parameters(), Hyper(lr=1e-3, betas=(0.9, 0.99), eps=1e-8))

Names:

- ``adam``    — ``torch.optim.Adam(amsgrad=False)``.
- ``amsgrad`` — ``torch.optim.Adam(amsgrad=True)``: PyTorch's AMSGrad keeps the max of the *uncorrected*
  second moment, max(v̂_{t−1}, v_t), and divides that max by (1 − β2^t) afterwards; ε is added after the
  square root. The paper's Algorithm 2 has no bias correction and no ε at all. With (0.9, 0.99) the two
  differ only in the first few hundred steps, where (1 − β^t) is not yet 1.
- ``torch.optim.<Class>`` — any optimizer class of ``torch.optim`` (e.g. ``torch.optim.SGD``), built with
  ``lr`` only and its own defaults for everything else. Trial engine only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Hyper:
    """The hyperparameters the CLI sets for every optimizer of an invocation."""

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.99)
    eps: float = 1e-8


@dataclass(frozen=True)
class OptimizerSpec:
    """A named optimizer: how to build it for the Trial, and which fused kernel (if any) runs it."""

    name: str
    build_torch: Callable[[Iterable[torch.nn.Parameter], Hyper], torch.optim.Optimizer]
    fused: str | None = None
    #: whether the fused kernel takes the AMSGrad max
    amsgrad: bool = False

    def build(self, params: Iterable[torch.nn.Parameter], hyper: Hyper) -> torch.optim.Optimizer:
        return self.build_torch(params, hyper)


def _adam(amsgrad: bool) -> Callable[[Iterable[torch.nn.Parameter], Hyper], torch.optim.Optimizer]:
    def build(params: Iterable[torch.nn.Parameter], h: Hyper) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=h.lr, betas=h.betas, eps=h.eps, amsgrad=amsgrad)

    return build


NAMED: dict[str, OptimizerSpec] = {
    "adam": OptimizerSpec("adam", _adam(False), fused="adam", amsgrad=False),
    "amsgrad": OptimizerSpec("amsgrad", _adam(True), fused="adam", amsgrad=True),
}

_TORCH_PREFIX = "torch.optim."


def resolve(name: str) -> OptimizerSpec:
    """The spec for ``name``; raises ``ValueError`` naming the choices if there is none."""
    if name in NAMED:
        return NAMED[name]
    if name.startswith(_TORCH_PREFIX):
        cls = getattr(torch.optim, name[len(_TORCH_PREFIX) :], None)
        if isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer) and cls is not torch.optim.Optimizer:
            return OptimizerSpec(name, lambda params, h: cls(params, lr=h.lr))
    raise ValueError(
        f"unknown optimizer {name!r}: choose from {', '.join(NAMED)} or torch.optim.<Class> (e.g. torch.optim.SGD)"
    )
