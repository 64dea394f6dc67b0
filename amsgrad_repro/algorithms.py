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


def _lr_value(lr: float | torch.Tensor) -> float:
    return lr.item() if isinstance(lr, torch.Tensor) else lr


def _check_lr(lr: float | torch.Tensor) -> None:
    """lr ≥ 0 (0 is a step that moves nothing: warm-ups and schedulers start there, as torch accepts), or a
    one-element tensor (read at every step, so a scheduler's ``fill_`` is seen), as torch's Adam."""
    if isinstance(lr, torch.Tensor):
        if lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        lr = lr.item()
    _check_real("learning rate", lr, 0.0, math.inf)


class AdaptiveMoment(torch.optim.Optimizer):
    """The generic Adam-type update of the module docstring, with every choice as a named flag.

    Args:
        params: parameters to optimize (real or complex, dense gradients).
        lr: α ≥ 0, a float or a one-element tensor.
        betas: (β1, β2), each in [0, 1). β2 is unused with ``beta2_schedule="adamnc"``.
        eps: ε ≥ 0, added after the square root.
        weight_decay: λ_wd ≥ 0. L2, as ``torch.optim.Adam``: g_t ← g_t + λ_wd·x_t before the moments; with
            ``decoupled_weight_decay=True``, AdamW's form instead: x_t ← (1 − α_t·λ_wd)·x_t before the update.
        amsgrad: None (no max), "paper", "pytorch" or "corrected".
        bias_correction: divide by 1 − Π β1s and 1 − β2^t. Default: False for ``amsgrad="paper"`` and
            for ``beta2_schedule="adamnc"`` (their definitions have none), True otherwise. "paper" requires
            False, "pytorch" and "corrected" require True, "adamnc" requires False.
        lr_schedule: "constant" or "sqrt" (α/√t).
        beta1_schedule: "constant", "exp" (β1·λ^{t−1}) or "inverse" (β1/t).
        beta1_decay: λ in (0, 1] for ``beta1_schedule="exp"``.
        beta2_schedule: "constant" or "adamnc" (1 − 1/t).
        maximize: ascend (g_t ← −g_t), as torch's.
        foreach: the multi-tensor path (``torch._foreach_*``): the same operations in the same order, bit for
            bit the loop's result (tested). None: the loop on CPU, foreach when every parameter is on CUDA.

    Conventions kept from ``torch.optim.Adam`` (each tested against it): ``state["step"]`` is a float64 tensor
    (a Python number would be a ``torch.compile`` guard that changes every step; float64 counts exactly to 2⁵³,
    where torch's float32 stops at 2²⁴ = 16.8 M steps); complex parameters are stepped as their real view
    (``torch.view_as_real``); a sparse gradient is refused before any parameter or state is touched; a
    ``state_dict`` of ``torch.optim.Adam(amsgrad=True)`` loads into ``AMSGrad(variant="pytorch")`` (the same
    state), any other foreign one is refused at ``load_state_dict``. Not offered: ``fused``, ``capturable``
    and ``differentiable`` (torch's own kernels and graph-capture paths, which these variants do not have).
    """

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float | torch.Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.99),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        amsgrad: str | None = None,
        bias_correction: bool | None = None,
        lr_schedule: str = "constant",
        beta1_schedule: str = "constant",
        beta1_decay: float = 1.0,
        beta2_schedule: str = "constant",
        decoupled_weight_decay: bool = False,
        maximize: bool = False,
        foreach: bool | None = None,
    ) -> None:
        _check_lr(lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"invalid betas: {betas!r} (a pair (β1, β2))")
        _check_real("beta1", betas[0], 0.0, 1.0)
        _check_real("beta2", betas[1], 0.0, 1.0)
        _check_real("epsilon", eps, 0.0, math.inf)
        _check_real("weight_decay value", weight_decay, 0.0, math.inf)
        _check_choice("amsgrad variant", amsgrad, (None, *AMSGRAD_VARIANTS))
        _check_choice("lr_schedule", lr_schedule, LR_SCHEDULES)
        _check_choice("beta1_schedule", beta1_schedule, BETA1_SCHEDULES)
        _check_real("beta1_decay (λ)", beta1_decay, 0.0, 1.0, lo_open=True, hi_open=False)
        _check_choice("beta2_schedule", beta2_schedule, BETA2_SCHEDULES)
        for name, flag in (("decoupled_weight_decay", decoupled_weight_decay), ("maximize", maximize)):
            if not isinstance(flag, bool):  # 1 == True: a membership test would take it
                raise ValueError(f"invalid {name}: {flag!r} (True or False)")
        if not (foreach is None or isinstance(foreach, bool)):
            raise ValueError(f"invalid foreach: {foreach!r} (None, True or False)")
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
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            bias_correction=bool(bias_correction),
            lr_schedule=lr_schedule,
            beta1_schedule=beta1_schedule,
            beta1_decay=beta1_decay,
            beta2_schedule=beta2_schedule,
            decoupled_weight_decay=decoupled_weight_decay,
            maximize=maximize,
            foreach=foreach,
        )
        super().__init__(params, defaults)

    def _init_state(self, p: torch.Tensor, group: dict) -> dict:
        state = self.state[p]
        if not state:
            state["step"] = torch.tensor(0.0, dtype=torch.float64)  # a tensor, as torch's (module docstring)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if group["beta1_schedule"] != "constant":
                state["beta1_product"] = torch.tensor(1.0, dtype=torch.float64)  # Π β1s, for b1_t
            if group["amsgrad"] is not None:
                state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:  # everything refused before anything is touched
            for p in group["params"]:
                if p.grad is not None and p.grad.is_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            states = [self._init_state(p, group) for p in params]
            foreach = group["foreach"]
            if foreach is None:
                foreach = bool(params) and all(p.is_cuda for p in params)
            for state in states:
                state["step"] += 1
            if foreach and params:
                _update_foreach(params, states, group)
            else:
                for p, state in zip(params, states, strict=True):
                    _update(p, p.grad, state, group)
        return loss

    def load_state_dict(self, state_dict: dict) -> None:
        """As torch's, after :func:`_adopt`: a ``torch.optim.Adam(amsgrad=True)`` state_dict is taken into
        ``AMSGrad(variant="pytorch")``; a state_dict of any other optimizer is refused here, in one line,
        rather than by a ``KeyError`` at the next step."""
        super().load_state_dict(_adopt(self, state_dict))


_TORCH_ADAM_ONLY = ("amsgrad", "capturable", "differentiable", "fused")


def _adopt(opt: AdaptiveMoment, state_dict: dict) -> dict:
    groups = state_dict.get("param_groups")
    if not isinstance(groups, list) or len(groups) != len(opt.param_groups):
        return state_dict  # torch's own check says what is wrong
    ours = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    if all("lr_schedule" in saved and "bias_correction" in saved and saved.get("amsgrad") in (None, *AMSGRAD_VARIANTS)
           for saved in groups):  # fmt: skip
        # ours; one saved before weight_decay, maximize and foreach existed takes this optimizer's values for them
        filled = [{**mine, **saved} for mine, saved in zip(ours, groups, strict=True)]
        return _step_tensors({**state_dict, "param_groups": filled})
    if not all(g.get("amsgrad") is True and {"lr", "betas", "eps", "weight_decay"} <= set(g) for g in groups):
        missing = sorted(set(ours[0]) - set(groups[0]))
        raise ValueError(
            f"this state_dict is not one of {type(opt).__name__}'s (its param groups lack {', '.join(missing)}): "
            "only torch.optim.Adam(amsgrad=True)'s loads, into AMSGrad(variant='pytorch')"
        )
    if any(g["amsgrad"] != "pytorch" or g["lr_schedule"] != "constant" or g["beta1_schedule"] != "constant"
           for g in ours):  # fmt: skip
        raise ValueError(
            "a torch.optim.Adam(amsgrad=True) state_dict loads only into AMSGrad(variant='pytorch') with constant "
            "schedules (the same update and the same state)"
        )
    if any(g.get(k) for g in groups for k in ("capturable", "differentiable", "fused")):
        raise ValueError("a torch.optim.Adam state_dict saved with capturable, differentiable or fused does not load")
    adopted = []
    for mine, saved in zip(ours, groups, strict=True):
        group = dict(mine)  # our flags, with the hyperparameters the checkpoint has
        group.update({k: v for k, v in saved.items() if k in mine and k not in _TORCH_ADAM_ONLY})
        group["params"] = saved["params"]
        adopted.append(group)
    return _step_tensors({**state_dict, "param_groups": adopted})


def _step_tensors(state_dict: dict) -> dict:
    """Each parameter's step (and Π β1s) as a float64 tensor (torch's Adam saves float32; an older state of ours,
    Python numbers)."""
    state = {}
    for index, s in state_dict.get("state", {}).items():
        s = dict(s)
        for key in ("step", "beta1_product"):  # an older state of ours kept them as Python numbers
            if key in s:
                s[key] = torch.as_tensor(s[key], dtype=torch.float64).clone()
        state[index] = s
    return {**state_dict, "state": state}


def _sqrt(t):
    return t.sqrt() if isinstance(t, torch.Tensor) else math.sqrt(t)


def _step_value(step: torch.Tensor):
    """The step count as a Python float, or, while ``torch.compile`` traces, the tensor itself (as torch's
    ``_get_value``): a float there would be a constant of the graph, recompiled at every step."""
    return step if torch.compiler.is_compiling() else step.item()


def schedules(group: dict, t, beta1: float, beta2: float) -> tuple[float, float, float]:
    """(α_t, β1t, β2t) for a param group at 1-based step t (a float, or a tensor while compiling)."""
    lr = _lr_value(group["lr"])
    lr = lr if group["lr_schedule"] == "constant" else lr / _sqrt(t)
    if group["beta1_schedule"] == "constant":
        b1 = beta1
    elif group["beta1_schedule"] == "exp":
        b1 = beta1 * group["beta1_decay"] ** (t - 1)
    else:
        b1 = beta1 / t
    b2 = beta2 if group["beta2_schedule"] == "constant" else 1.0 - 1.0 / t
    return lr, b1, b2


def _step_numbers(state: dict, group: dict) -> tuple[float, float, float, float | None, float | None]:
    """(α_t, β1t, β2t, b1_t, b2_t) at this state's step; b1_t, b2_t are None without bias correction."""
    beta1, beta2 = group["betas"]
    t = _step_value(state["step"])  # an exact integer in float64
    lr_t, b1_t, b2_t = schedules(group, t, beta1, beta2)
    if not group["bias_correction"]:
        return lr_t, b1_t, b2_t, None, None
    if group["beta1_schedule"] == "constant":
        bc1 = 1 - beta1**t  # torch's expression, so "pytorch" matches torch.optim.Adam exactly
    else:
        state["beta1_product"] *= b1_t
        bc1 = 1 - _step_value(state["beta1_product"])  # the total weight of m_t's terms
    return lr_t, b1_t, b2_t, bc1, 1 - beta2**t


def _real(t: torch.Tensor) -> torch.Tensor:
    return torch.view_as_real(t) if torch.is_complex(t) else t


def _update(p: torch.Tensor, grad: torch.Tensor, state: dict, group: dict) -> None:
    lr_t, b1_t, b2_t, bc1, bc2 = _step_numbers(state, group)
    p, grad = _real(p), _real(grad)  # complex: the real view, as torch's Adam
    m, v = _real(state["exp_avg"]), _real(state["exp_avg_sq"])
    vmax = _real(state["max_exp_avg_sq"]) if "max_exp_avg_sq" in state else None
    if group["maximize"]:
        grad = -grad
    wd = group["weight_decay"]
    if wd != 0:
        if group["decoupled_weight_decay"]:
            p.mul_(1 - lr_t * wd)  # AdamW: x ← (1 − α_t·λ_wd)·x
        else:
            grad = grad.add(p, alpha=wd)  # L2: g ← g + λ_wd·x
    m.lerp_(grad, 1 - b1_t)  # m_t = β1t·m_{t−1} + (1 − β1t)·g_t
    v.mul_(b2_t).addcmul_(grad, grad, value=1 - b2_t)  # v_t = β2t·v_{t−1} + (1 − β2t)·g_t²
    variant, eps = group["amsgrad"], group["eps"]
    if bc1 is not None:
        step_size = lr_t / bc1
        if variant == "corrected":
            torch.maximum(vmax, v / bc2, out=vmax)  # v̂_t = max(v̂_{t−1}, v_t / b2_t)
            denom = vmax.sqrt().add_(eps)
        else:
            if variant == "pytorch":
                torch.maximum(vmax, v, out=vmax)  # max over raw v
                v = vmax
            denom = (v.sqrt() / bc2**0.5).add_(eps)  # √v̂_t / √b2_t + ε
    else:
        step_size = lr_t
        if variant == "paper":
            torch.maximum(vmax, v, out=vmax)  # v̂_t = max(v̂_{t−1}, v_t)
            v = vmax
        denom = v.sqrt().add_(eps)
    if eps == 0:
        # a coordinate whose second moment is 0 (its gradient has been 0 from the start) does not move: its
        # m_t is 0 too, and 0/0 would make it NaN. 0/∞ = 0 moves it by nothing.
        denom.masked_fill_(denom == 0, math.inf)
    p.addcdiv_(m, denom, value=-step_size)  # x_{t+1} = x_t − step·m_t / denom (projection: the caller's)


def _update_foreach(params: list[torch.Tensor], states: list[dict], group: dict) -> None:
    """:func:`_update` for many parameters at once, with ``torch._foreach_*`` ops: the same operations in the
    same order, so bit for bit the same result. Parameters at different steps (one added to the optimizer
    later, or one whose gradient was None at some step) go through :func:`_update` one by one."""
    steps = {s["step"].item() for s in states}
    products = {s["beta1_product"].item() for s in states if "beta1_product" in s}
    if len(steps) > 1 or len(products) > 1:
        for p, s in zip(params, states, strict=True):
            _update(p, p.grad, s, group)
        return
    lr_t, b1_t, b2_t, bc1, bc2 = _step_numbers(states[0], group)  # the same for every parameter here
    for s in states[1:]:
        if "beta1_product" in s:
            s["beta1_product"].copy_(states[0]["beta1_product"])  # the same product, advanced once
    ps = [_real(p) for p in params]
    grads = [_real(p.grad) for p in params]
    ms = [_real(s["exp_avg"]) for s in states]
    vs = [_real(s["exp_avg_sq"]) for s in states]
    variant, eps, wd = group["amsgrad"], group["eps"], group["weight_decay"]
    vmaxs = [_real(s["max_exp_avg_sq"]) for s in states] if variant is not None else []
    if group["maximize"]:
        grads = torch._foreach_neg(grads)
    if wd != 0:
        if group["decoupled_weight_decay"]:
            torch._foreach_mul_(ps, 1 - lr_t * wd)
        else:
            grads = torch._foreach_add(grads, ps, alpha=wd)
    torch._foreach_lerp_(ms, grads, 1 - b1_t)
    torch._foreach_mul_(vs, b2_t)
    torch._foreach_addcmul_(vs, grads, grads, value=1 - b2_t)
    if bc1 is not None:
        step_size = lr_t / bc1
        if variant == "corrected":
            torch._foreach_maximum_(vmaxs, torch._foreach_div(vs, bc2))
            denoms = torch._foreach_sqrt(vmaxs)
        else:
            if variant == "pytorch":
                torch._foreach_maximum_(vmaxs, vs)
                vs = vmaxs
            denoms = torch._foreach_sqrt(vs)
            torch._foreach_div_(denoms, bc2**0.5)
        torch._foreach_add_(denoms, eps)
    else:
        step_size = lr_t
        if variant == "paper":
            torch._foreach_maximum_(vmaxs, vs)
            vs = vmaxs
        denoms = torch._foreach_sqrt(vs)
        torch._foreach_add_(denoms, eps)
    if eps == 0:
        for d in denoms:
            d.masked_fill_(d == 0, math.inf)  # as in _update: a zero second moment does not move
    torch._foreach_addcdiv_(ps, ms, denoms, value=-step_size)


class AMSGrad(AdaptiveMoment):
    """AMSGrad (Reddi et al., Algorithm 2) in one of three variants; see the module docstring.

    Args:
        variant: "paper" (default: raw max, no bias correction), "pytorch" (raw max, then bias correction;
            equals ``torch.optim.Adam(amsgrad=True)``), "corrected" (bias-correct, then max).
        eps: default 0 for "paper" (Algorithm 2 has none), 1e-8 for the others.
        weight_decay, decoupled_weight_decay, maximize, foreach: as in :class:`AdaptiveMoment` (and torch's).
        lr_schedule, beta1_schedule, beta1_decay: as in :class:`AdaptiveMoment` (Theorem 4 uses α/√t and a
            β1t ≤ β1; Corollary 1 uses β1·λ^{t−1}).
    """

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.99),
        eps: float | None = None,
        weight_decay: float = 0.0,
        *,
        variant: str = "paper",
        lr_schedule: str = "constant",
        beta1_schedule: str = "constant",
        beta1_decay: float = 1.0,
        decoupled_weight_decay: bool = False,
        maximize: bool = False,
        foreach: bool | None = None,
    ) -> None:
        _check_choice("AMSGrad variant", variant, AMSGRAD_VARIANTS)
        super().__init__(
            params,
            lr,
            betas,
            (0.0 if variant == "paper" else 1e-8) if eps is None else eps,
            weight_decay,
            amsgrad=variant,
            lr_schedule=lr_schedule,
            beta1_schedule=beta1_schedule,
            beta1_decay=beta1_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            maximize=maximize,
            foreach=foreach,
        )


class AdamNC(AdaptiveMoment):
    """AdamNC (the paper's appendix): Adam with β2t = 1 − 1/t, so v_t = (1/t)·Σ g_s², no max, no bias correction.

    Args:
        beta1: β1 in [0, 1) (with an optional schedule, as in :class:`AdaptiveMoment`).
        eps: default 0 (the paper has none).
        weight_decay, decoupled_weight_decay, maximize, foreach: as in :class:`AdaptiveMoment` (and torch's).
    """

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float = 1e-3,
        beta1: float = 0.9,
        eps: float = 0.0,
        weight_decay: float = 0.0,
        *,
        lr_schedule: str = "constant",
        beta1_schedule: str = "constant",
        beta1_decay: float = 1.0,
        decoupled_weight_decay: bool = False,
        maximize: bool = False,
        foreach: bool | None = None,
    ) -> None:
        super().__init__(
            params,
            lr,
            (beta1, 0.0),
            eps,
            weight_decay,
            lr_schedule=lr_schedule,
            beta1_schedule=beta1_schedule,
            beta1_decay=beta1_decay,
            beta2_schedule="adamnc",
            decoupled_weight_decay=decoupled_weight_decay,
            maximize=maximize,
            foreach=foreach,
        )
