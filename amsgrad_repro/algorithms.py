"""The paper's algorithms as ``torch.optim`` optimizers: Adam, AMSGrad (three variants), AdamNC, with schedules.

Usage::

    from amsgrad_repro.algorithms import AMSGrad, AdamNC, AdaptiveMoment

    AMSGrad(model.parameters(), lr=1e-3, betas=(0.9, 0.99))                      # the paper's Algorithm 2
    AMSGrad(model.parameters(), variant="pytorch")          # = torch.optim.Adam(amsgrad=True), bit for bit
    AMSGrad(model.parameters(), variant="corrected")        # bias-correct v first, then the max (optax)
    AMSGrad(model.parameters(), lr_schedule="sqrt", beta1_schedule="exp", beta1_decay=0.99)   # Theorem 4 / Cor. 1
    AdamNC(model.parameters(), lr=1e-3, beta1=0.9)          # β2t = 1 − 1/t, no max

One step, for a parameter x with gradient g_t and a 1-based step count t (all three AMSGrads and AdamNC are
this update with different flags)::

    α_t  = α                 (lr_schedule="constant")    or  α/√t            ("sqrt", Theorem 4)
    β1t  = β1                (beta1_schedule="constant") or  β1·λ^{t−1} ("exp", Cor. 1) or β1/t ("inverse")
    β2t  = β2                (beta2_schedule="constant") or  1 − 1/t          ("adamnc")
    m_t  = β1t·m_{t−1} + (1 − β1t)·g_t                       torch: m.lerp_(g, 1 − β1t)
    v_t  = β2t·v_{t−1} + (1 − β2t)·g_t²                      torch: v.mul_(β2t).addcmul_(g, g, 1 − β2t)
    b1_t = 1 − Π_{s≤t} β1s   (= 1 − β1^t for constant β1; the weight m_t's terms sum to)
    b2_t = 1 − β2^t

    amsgrad=None, bias_correction=True  (Adam):     x ← x − (α_t/b1_t)·m_t / (√v_t/√b2_t + ε)
    amsgrad=None, bias_correction=False (paper's Adam, AdamNC):  x ← x − α_t·m_t / (√v_t + ε)
    amsgrad="paper"     (Alg. 2):  v̂_t = max(v̂_{t−1}, v_t);        x ← x − α_t·m_t / (√v̂_t + ε)
    amsgrad="pytorch"   (torch):   v̂_t = max(v̂_{t−1}, v_t);        x ← x − (α_t/b1_t)·m_t / (√v̂_t/√b2_t + ε)
    amsgrad="corrected" (optax):   v̂_t = max(v̂_{t−1}, v_t/b2_t);   x ← x − (α_t/b1_t)·m_t / (√v̂_t + ε)

How the variants differ: ``paper`` never bias-corrects, so its first steps are small (m_1 = (1 − β1)·g_1) and it
has no ε by default. ``pytorch`` keeps the max of the *raw* v and corrects the max afterwards. Since
1 − β2^t grows, the corrected max can be smaller than an earlier corrected v, so early on it is not the
max of the corrected values. ``corrected`` takes the max of the corrected values, which is what labml_nn's author
"feels" is right and what optax does by default. The three agree once b2_t is exactly 1.0 in float64
(t ≥ 3,725 for β2 = 0.99), apart from what the early steps left in x, m and v̂.

Open choices, stated: the step count t is 1-based; x ← Π_F(x − …) is left to the caller (our Trial's
``Projection``); with a β1 schedule, b1_t is the running product (1 − Π β1s), not 1 − β1^t; ε is added after
the square root, as torch does. The arithmetic uses the same tensor ops, in the same order, as
``torch.optim.Adam``'s single-tensor path, so ``variant="pytorch"`` with constant schedules reproduces it
exactly, and the fused engine can mirror every flag.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from .schedules import BETA1_SCHEDULES, BETA2_SCHEDULES, LR_SCHEDULES

AMSGRAD_VARIANTS = ("paper", "pytorch", "corrected")


def _check_real(name: str, value: float, lo: float, hi: float, lo_open: bool = False, hi_open: bool = True) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)
    if not ok:
        left, right = "(" if lo_open else "[", ")" if hi_open else "]"
        raise ValueError(f"invalid {name}: {value!r} (must lie in {left}{lo}, {hi}{right})")


def _check_choice(name: str, value: object, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"invalid {name}: {value!r} (choose from {', '.join(map(str, choices))})")


class AdaptiveMoment(torch.optim.Optimizer):
    """The generic Adam-type update of the module docstring, with every choice as a named flag.

    Args:
        params: parameters to optimize.
        lr: α > 0.
        betas: (β1, β2), each in [0, 1). β2 is unused with ``beta2_schedule="adamnc"``.
        eps: ε ≥ 0, added after the square root.
        amsgrad: None (no max), "paper", "pytorch" or "corrected".
        bias_correction: divide by 1 − Π β1s and 1 − β2^t. Default: False for ``amsgrad="paper"`` and
            for ``beta2_schedule="adamnc"`` (their definitions have none), True otherwise. "paper" requires
            False, "pytorch" and "corrected" require True, "adamnc" requires False.
        lr_schedule: "constant" or "sqrt" (α/√t).
        beta1_schedule: "constant", "exp" (β1·λ^{t−1}) or "inverse" (β1/t).
        beta1_decay: λ in (0, 1] for ``beta1_schedule="exp"``.
        beta2_schedule: "constant" or "adamnc" (1 − 1/t).
    """

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.99),
        eps: float = 1e-8,
        *,
        amsgrad: str | None = None,
        bias_correction: bool | None = None,
        lr_schedule: str = "constant",
        beta1_schedule: str = "constant",
        beta1_decay: float = 1.0,
        beta2_schedule: str = "constant",
    ) -> None:
        _check_real("learning rate", lr, 0.0, math.inf, lo_open=True)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"invalid betas: {betas!r} (a pair (β1, β2))")
        _check_real("beta1", betas[0], 0.0, 1.0)
        _check_real("beta2", betas[1], 0.0, 1.0)
        _check_real("epsilon", eps, 0.0, math.inf)
        _check_choice("amsgrad variant", amsgrad, (None, *AMSGRAD_VARIANTS))
        _check_choice("lr_schedule", lr_schedule, LR_SCHEDULES)
        _check_choice("beta1_schedule", beta1_schedule, BETA1_SCHEDULES)
        _check_real("beta1_decay (λ)", beta1_decay, 0.0, 1.0, lo_open=True, hi_open=False)
        _check_choice("beta2_schedule", beta2_schedule, BETA2_SCHEDULES)
        if bias_correction is None:
            bias_correction = amsgrad != "paper" and beta2_schedule != "adamnc"
        required = {"paper": False, "pytorch": True, "corrected": True}.get(amsgrad)
        if required is not None and bias_correction != required:
            raise ValueError(f"amsgrad={amsgrad!r} is defined with bias_correction={required}")
        if beta2_schedule == "adamnc" and (bias_correction or amsgrad is not None):
            raise ValueError("beta2_schedule='adamnc' (AdamNC) has no bias correction and no max")
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            amsgrad=amsgrad,
            bias_correction=bool(bias_correction),
            lr_schedule=lr_schedule,
            beta1_schedule=beta1_schedule,
            beta1_decay=beta1_decay,
            beta2_schedule=beta2_schedule,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("AdaptiveMoment does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["beta1_product"] = 1.0
                    if group["amsgrad"] is not None:
                        state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                _update(p, p.grad, state, group, beta1, beta2)
        return loss


def schedules(group: dict, t: int, beta1: float, beta2: float) -> tuple[float, float, float]:
    """(α_t, β1t, β2t) for a param group at 1-based step t."""
    lr = group["lr"] if group["lr_schedule"] == "constant" else group["lr"] / math.sqrt(t)
    if group["beta1_schedule"] == "constant":
        b1 = beta1
    elif group["beta1_schedule"] == "exp":
        b1 = beta1 * group["beta1_decay"] ** (t - 1)
    else:
        b1 = beta1 / t
    b2 = beta2 if group["beta2_schedule"] == "constant" else 1.0 - 1.0 / t
    return lr, b1, b2


def _update(p: torch.Tensor, grad: torch.Tensor, state: dict, group: dict, beta1: float, beta2: float) -> None:
    t = state["step"]
    lr_t, b1_t, b2_t = schedules(group, t, beta1, beta2)
    m, v = state["exp_avg"], state["exp_avg_sq"]
    m.lerp_(grad, 1 - b1_t)  # m_t = β1t·m_{t−1} + (1 − β1t)·g_t
    v.mul_(b2_t).addcmul_(grad, grad, value=1 - b2_t)  # v_t = β2t·v_{t−1} + (1 − β2t)·g_t²
    variant, eps = group["amsgrad"], group["eps"]
    if group["bias_correction"]:
        if group["beta1_schedule"] == "constant":
            bc1 = 1 - beta1**t  # torch's expression, so "pytorch" matches torch.optim.Adam exactly
        else:
            state["beta1_product"] *= b1_t
            bc1 = 1 - state["beta1_product"]  # the total weight of m_t's terms
        bc2 = 1 - beta2**t
        step_size = lr_t / bc1
        if variant == "corrected":
            vmax = state["max_exp_avg_sq"]
            torch.maximum(vmax, v / bc2, out=vmax)  # v̂_t = max(v̂_{t−1}, v_t / b2_t)
            denom = vmax.sqrt().add_(eps)
        else:
            if variant == "pytorch":
                torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])  # max over raw v
                v = state["max_exp_avg_sq"]
            denom = (v.sqrt() / bc2**0.5).add_(eps)  # √v̂_t / √b2_t + ε
    else:
        step_size = lr_t
        if variant == "paper":
            torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])  # v̂_t = max(v̂_{t−1}, v_t)
            v = state["max_exp_avg_sq"]
        denom = v.sqrt().add_(eps)
    p.addcdiv_(m, denom, value=-step_size)  # x_{t+1} = x_t − step·m_t / denom (projection: the caller's)


class AMSGrad(AdaptiveMoment):
    """AMSGrad (Reddi et al., Algorithm 2) in one of three variants; see the module docstring.

    Args:
        variant: "paper" (default: raw max, no bias correction), "pytorch" (raw max, then bias correction;
            equals ``torch.optim.Adam(amsgrad=True)``), "corrected" (bias-correct, then max).
        eps: default 0 for "paper" (Algorithm 2 has none), 1e-8 for the others.
        lr_schedule, beta1_schedule, beta1_decay: as in :class:`AdaptiveMoment` (Theorem 4 uses α/√t and a
            β1t ≤ β1; Corollary 1 uses β1·λ^{t−1}).
    """

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.99),
        eps: float | None = None,
        *,
        variant: str = "paper",
        lr_schedule: str = "constant",
        beta1_schedule: str = "constant",
        beta1_decay: float = 1.0,
    ) -> None:
        _check_choice("AMSGrad variant", variant, AMSGRAD_VARIANTS)
        super().__init__(
            params,
            lr,
            betas,
            (0.0 if variant == "paper" else 1e-8) if eps is None else eps,
            amsgrad=variant,
            lr_schedule=lr_schedule,
            beta1_schedule=beta1_schedule,
            beta1_decay=beta1_decay,
        )


class AdamNC(AdaptiveMoment):
    """AdamNC (the paper's appendix): Adam with β2t = 1 − 1/t, so v_t = (1/t)·Σ g_s², no max, no bias correction.

    Args:
        beta1: β1 in [0, 1) (with an optional schedule, as in :class:`AdaptiveMoment`).
        eps: default 0 (the paper has none).
    """

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float = 1e-3,
        beta1: float = 0.9,
        eps: float = 0.0,
        *,
        lr_schedule: str = "constant",
        beta1_schedule: str = "constant",
        beta1_decay: float = 1.0,
    ) -> None:
        super().__init__(
            params,
            lr,
            (beta1, 0.0),
            eps,
            lr_schedule=lr_schedule,
            beta1_schedule=beta1_schedule,
            beta1_decay=beta1_decay,
            beta2_schedule="adamnc",
        )
