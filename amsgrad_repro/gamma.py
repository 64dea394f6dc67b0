"""Γ_t, the quantity the paper's argument turns on (Section 3), read from any optimizer's state.

Usage::

    from amsgrad_repro.gamma import inverse_step, why_undefined

    opt = torch.optim.Adam(model.parameters(), betas=(0.9, 0.99))
    if why_undefined(opt) is None:
        before = inverse_step(opt, p)     # √V_t/α_t per coordinate of p (numpy float64), after step t
        opt.step()
        gamma = inverse_step(opt, p) - before         # Γ_{t+1}: negative where the step size grew

The paper writes every method as x_{t+1} = Π_F(x_t − α_t·m_t/√V_t) with m_t = φ_t(g_1..g_t), V_t = ψ_t(g_1..g_t),
and shows (Section 3) that the proofs for SGD and AdaGrad rest on

    Γ_{t+1} = √V_{t+1}/α_{t+1} − √V_t/α_t  ⪰ 0,

i.e. the effective step size α_t/√V_t never grows. Adam's and RMSprop's can: Γ is then negative on that
coordinate, which is how Adam forgets a rare large gradient. AMSGrad's max keeps √V_t non-decreasing, so with a
constant or decreasing α_t its Γ is never negative.

What √V_t/α_t is here, per optimizer (the choices the paper leaves open, named):

- **the denominator actually used**: ε is part of √V_t (added after the square root, as the optimizers do),
  and a bias correction of v (1 − β2^t) is part of V_t; a bias correction of m (1 − β1^t, Adam's b1_t) is part
  of m_t = φ_t, not of α_t, so α_t is the schedule alone (α, or α/√t);
- Adam family (torch's ``Adam``/``AdamW``, ours: :class:`~amsgrad_repro.algorithms.AdaptiveMoment` and its
  AMSGrad variants, AdamNC): √V_t = √(v̂_t / b2_t) + ε, where v̂_t is the max (AMSGrad) or v_t, and b2_t = 1 − β2^t
  with bias correction (1 without; AMSGrad ``corrected`` has v̂_t already divided by it); α_t = α or α/√t.
  With torch's bias correction, AMSGrad ``pytorch``'s √V_t can *fall* while b2_t grows: its Γ can be negative in
  the first few thousand steps, though the max never decreases; the paper's form cannot;
- RMSprop: √V_t = √v_t + ε (centred: √(v_t − ḡ_t²) + ε); AdaGrad: √(Σg²) + ε over α/(1 + (t − 1)·lr_decay)
  (the paper's V_t = Σg²/t with α/√t is the same ratio); Adamax: √V_t = u_t (its ∞-norm, ε inside); NAdam:
  √(v_t / b2_t) + ε over α (its μ-weighted mix of m_t and g_t is the direction); SGD with or without momentum:
  √V_t = 1, so Γ = 1/α_{t+1} − 1/α_t (0 for a constant step size);
- any other optimizer (Adadelta, RAdam's rectification, Rprop, Lion's sign, third-party classes): Γ is not
  defined here (:func:`why_undefined` says so), rather than guessed. A subclass of one of the classes above is
  read as that class (its state keys and group options are assumed to mean the same).

The arithmetic is float64 numpy on the state's values (``sqrt`` correctly rounded), the same expression in the
same order as the fused engine's kernels, so both engines log the same Γ bit for bit.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .algorithms import AdaptiveMoment

__all__ = ["inverse_step", "why_undefined"]

_ADAM = (torch.optim.Adam, torch.optim.AdamW)
_DEFINED = (AdaptiveMoment, *_ADAM, torch.optim.RMSprop, torch.optim.Adagrad, torch.optim.Adamax,
            torch.optim.NAdam, torch.optim.SGD)  # fmt: skip


def why_undefined(optimizer: torch.optim.Optimizer) -> str | None:
    """None if Γ is defined for ``optimizer`` (see the module's list), else one line saying why not."""
    if isinstance(optimizer, _DEFINED):
        return None
    cls = type(optimizer)
    module = "torch.optim" if cls.__module__.startswith("torch.optim.") else cls.__module__
    return (
        f"Γ_t is not defined for {module}.{cls.__qualname__}: its step is not "
        "α_t·m_t/√V_t with a V_t read from its state (defined for the Adam family, AdaGrad, RMSprop, Adamax, NAdam, "
        "SGD)"
    )


def _np(t: torch.Tensor) -> np.ndarray:
    """A state tensor's values as float64 numpy (complex as its real view, as the optimizers step it)."""
    t = t.detach()
    if torch.is_complex(t):
        t = torch.view_as_real(t)
    return t.to("cpu", torch.float64).numpy()


def _step(state: dict) -> float:
    step = state["step"]
    return float(step.item() if isinstance(step, torch.Tensor) else step)


def _lr(group: dict) -> float:
    lr = group["lr"]
    return float(lr.item() if isinstance(lr, torch.Tensor) else lr)


def inverse_step(optimizer: torch.optim.Optimizer, p: torch.Tensor) -> np.ndarray | None:
    """√V_t/α_t for every coordinate of parameter ``p`` (numpy float64, p's shape), as of ``optimizer``'s last
    step t; None before p's first step. Raises ValueError where Γ is not defined (:func:`why_undefined`).

    Reads, per optimizer, the state keys its step writes (``exp_avg_sq``, ``max_exp_avg_sq``, ``square_avg``,
    ``grad_avg``, ``sum``, ``exp_inf``, ``step``) and its group's ``lr``, ``betas``, ``eps`` and schedule flags."""
    why = why_undefined(optimizer)
    if why is not None:
        raise ValueError(why)
    group = next(g for g in optimizer.param_groups if any(q is p for q in g["params"]))
    state = optimizer.state.get(p, {})
    lr = _lr(group)
    if isinstance(optimizer, torch.optim.SGD):
        # no state of its own without momentum: √V_t = 1 whatever t is
        return np.full(tuple(p.shape) + ((2,) if torch.is_complex(p) else ()), 1.0 / lr)
    if "step" not in state or _step(state) == 0:  # (torch's Adagrad makes its state at construction)
        return None
    t = _step(state)
    if isinstance(optimizer, AdaptiveMoment):
        beta2 = group["betas"][1]
        lr_t = lr if group["lr_schedule"] == "constant" else lr / math.sqrt(t)
        v = _np(state["max_exp_avg_sq"] if group["amsgrad"] is not None else state["exp_avg_sq"])
        if group["bias_correction"] and group["amsgrad"] != "corrected":
            v = v / (1 - beta2**t)  # b2_t; "corrected" keeps v̂ already divided by it
        return (np.sqrt(v) + group["eps"]) / lr_t
    if isinstance(optimizer, _ADAM):
        beta2 = group["betas"][1]
        v = _np(state["max_exp_avg_sq"] if group["amsgrad"] else state["exp_avg_sq"])
        return (np.sqrt(v / (1 - beta2**t)) + group["eps"]) / lr
    if isinstance(optimizer, torch.optim.NAdam):
        beta2 = group["betas"][1]
        return (np.sqrt(_np(state["exp_avg_sq"]) / (1 - beta2**t)) + group["eps"]) / lr
    if isinstance(optimizer, torch.optim.RMSprop):
        v = _np(state["square_avg"])
        if group["centered"]:
            avg = _np(state["grad_avg"])
            v = v - avg * avg
        return (np.sqrt(v) + group["eps"]) / lr
    if isinstance(optimizer, torch.optim.Adagrad):
        clr = lr / (1 + (t - 1) * group["lr_decay"])
        return (np.sqrt(_np(state["sum"])) + group["eps"]) / clr
    # Adamax: u_t = max(β2·u, |g| + ε) is √V_t itself
    return _np(state["exp_inf"]) / lr
