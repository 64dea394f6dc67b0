"""What a real-data run and invocation are: the grid's settings, each model's defaults, and the planned runs.

Usage::

    from amsgrad_repro.realdata.config import RealConfig, plan
    cfg = RealConfig("logreg", lrs=(1e-3, 1e-2), beta2s=(0.99, 0.999), seeds=(0, 1)).resolved()
    runs = plan(cfg)                        # [RealRun("adam/lr=0.001/beta2=0.99/seed=0", ...), ...]

Every other module of the wing imports its types from here: :mod:`.engines` trains :class:`RealRun` s and
:mod:`.experiment` validates a :class:`RealConfig` and writes the run directory.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..optimizers import Choice, parse_spec, resolve
from ..values import distinct_names

__all__ = ["FIGURE2", "GAMMA_CHARTS", "MODEL_DEFAULTS", "REAL_DATA_EPS", "RealConfig", "RealRun", "plan"]

#: the paper's Figure 2: top row logistic regression's training loss (left) and test loss (centre) and the
#: network's training loss (right), on MNIST; bottom row CIFARNET's training and test loss, on CIFAR-10. Per model:
#: where it is in the figure (for --help), and per chart (title, tag, place): TensorBoard's Custom Scalars layout
#: (the panels the figure has, then ours, labelled as such) and ``plot``'s grid of two rows by three columns
#: (row, column), the same panels in the paper's places; the network's test loss, which the paper does not plot,
#: takes the one free place (bottom right); test accuracy is in TensorBoard and the tables, not in the figure.
#: with ``--gamma``, Custom Scalars charts beside the figure's (ours: the paper measures no Γ on real data)
GAMMA_CHARTS = [
    ("coordinates with Γ_t < 0: effective step size grew (ours)", "gamma_negative_coordinates"),
    ("median growth of the step size where it grew (ours)", "gamma_step_growth"),
]
FIGURE2 = {
    "logreg": (
        "Figure 2, top left and top centre",
        [
            ("Figure 2, top left: logistic regression, training loss", "train_loss", (0, 0)),
            ("Figure 2, top centre: logistic regression, test loss", "test_loss", (0, 1)),
            ("logistic regression, test accuracy (ours; not a panel of Figure 2)", "test_accuracy", None),
        ],
    ),
    "mlp": (
        "Figure 2, top right",
        [
            ("Figure 2, top right: one-hidden-layer network, training loss", "train_loss", (0, 2)),
            ("one-hidden-layer network, test loss (ours; not a panel of Figure 2)", "test_loss", (1, 2)),
            ("one-hidden-layer network, test accuracy (ours; not a panel of Figure 2)", "test_accuracy", None),
        ],
    ),
    "cifarnet": (
        "Figure 2, bottom row",
        [
            ("Figure 2, bottom left: CIFARNET, training loss", "train_loss", (1, 0)),
            ("Figure 2, bottom right: CIFARNET, test loss", "test_loss", (1, 1)),
            ("CIFARNET, test accuracy (ours; not a panel of Figure 2)", "test_accuracy", None),
        ],
    ),
}


#: per model: default data set, iterations, step size and α schedule
MODEL_DEFAULTS = {
    "logreg": {"data": "mnist", "iterations": 3000, "lr": 1e-2, "lr_schedule": "sqrt"},
    "mlp": {"data": "mnist", "iterations": 3000, "lr": 1e-3, "lr_schedule": "constant"},
    "cifarnet": {"data": "cifar10", "iterations": 5000, "lr": 1e-3, "lr_schedule": "constant"},
}
#: ε for optimizers whose own default is 0 (amsgrad-paper, adamnc), on real data
REAL_DATA_EPS = 1e-8


@dataclass(frozen=True)
class RealConfig:
    """One invocation. ``None`` means the model's default (:data:`MODEL_DEFAULTS`) or the optimizer's own."""

    model: str = "mlp"
    data: str | None = None
    data_dir: str | None = None
    optimizers: tuple[str, ...] = ("adam", "amsgrad")
    lrs: tuple[float, ...] | None = None
    beta1: float | None = None
    beta2s: tuple[float, ...] | None = None
    eps: float | None = None
    #: λ for every optimizer of the grid: L2 (torch.optim's ``weight_decay``), or AdamW's form when decoupled
    weight_decay: float = 0.0
    decoupled_weight_decay: bool = False
    #: also log Γ's share of coordinates whose step size grew, and by how much (amsgrad_repro.gamma), per logged t
    gamma: bool = False
    seeds: tuple[int, ...] = (0,)
    iterations: int | None = None
    batch_size: int = 128
    lr_schedule: str | None = None
    log_every: int = 50
    eval_every: int = 250
    device: str = "auto"
    threads: int | None = None
    #: runs at once in worker processes (amsgrad_repro.pool); None: the CPUs this process may use ÷ threads
    jobs: int | None = None
    logdir: str = "logs"
    run_name: str | None = None
    overwrite: bool = False
    progress: bool | None = None  # None: a bar only on a terminal
    allow_large: bool = False
    #: run on Ray: "local", "auto" or "host:port"; None: in this process (see amsgrad_repro.cluster)
    ray: str | None = None
    ray_timeout: float = 120.0

    def resolved(self) -> RealConfig:
        """This config with the model's defaults filled in."""
        d = MODEL_DEFAULTS.get(self.model, MODEL_DEFAULTS["mlp"])
        return RealConfig(
            **(
                asdict(self)
                | {
                    "data": self.data or d["data"],
                    "iterations": self.iterations if self.iterations is not None else d["iterations"],
                    "lrs": self.lrs if self.lrs is not None else (d["lr"],),
                    "lr_schedule": self.lr_schedule or d["lr_schedule"],
                    "optimizers": tuple(self.optimizers),
                    "seeds": tuple(self.seeds),
                }
            )
        )


@dataclass(frozen=True)
class RealRun:
    """One run of the grid: its name (a path under the run directory), optimizer, lr, β2 (None when the
    optimizer has none) and seed."""

    name: str
    choice: Choice
    lr: float | None
    beta2: float | None
    seed: int


def _choice(spec: str, overrides: dict, eps_given: bool) -> Choice:
    choice = resolve(spec, overrides)
    if choice.hp.get("eps") == 0.0 and not eps_given and "eps" not in parse_spec(spec)[1]:
        choice = resolve(spec, overrides | {"eps": REAL_DATA_EPS})
    return choice


def plan(cfg: RealConfig) -> list[RealRun]:
    """Every run of the grid, in order: optimizer, then lr, then β2, then seed. Raises ValueError."""
    lrs, beta2s, seeds = cfg.lrs or (None,), cfg.beta2s or (None,), cfg.seeds
    sweep_lr, sweep_b2, sweep_seed = len(lrs) > 1, len(beta2s) > 1, len(seeds) > 1
    lr_names, beta2_names = distinct_names(lrs), distinct_names(beta2s)  # values that print alike: two names
    runs = []
    for spec in cfg.optimizers:
        own = parse_spec(spec)[1]
        if "lr_schedule" in own:
            raise ValueError(f"{spec}: on real data the α schedule is --lr-schedule, for every optimizer")
        base = {"beta1": cfg.beta1, "eps": cfg.eps}
        takes_beta2 = "beta2" in resolve(spec).hp and "beta2" not in own
        for lr in (None,) if "lr" in own else lrs:
            for beta2 in beta2s if takes_beta2 else (None,):
                choice = _choice(spec, base | {"lr": lr, "beta2": beta2}, cfg.eps is not None)
                for seed in seeds:
                    name = spec
                    if sweep_lr and "lr" not in own:
                        name += f"/lr={lr_names[lr]}"
                    if sweep_b2 and takes_beta2:
                        name += f"/beta2={beta2_names[beta2]}"
                    if sweep_seed:
                        name += f"/seed={seed}"
                    runs.append(RealRun(name, choice, choice.hp.get("lr"), choice.hp.get("beta2"), seed))
    return runs
