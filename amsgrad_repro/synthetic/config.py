"""What a synthetic run and invocation are: the problem, the invocation's settings, and its planned runs.

Usage::

    from amsgrad_repro.synthetic.config import Config, ProblemConfig, plan_runs
    cfg = Config(ProblemConfig("stochastic", seed=3), steps=20_000, optimizers=("adam", "amsgrad"), seeds=(0, 1))
    problem = cfg.problem.make()            # an nn.Module with x as its parameter (the Trial's)
    functions = cfg.problem.functions()     # the same slopes, F and x*, without torch (the fused engine's)
    runs = plan_runs(cfg, {})               # [Run("adam/seed=0", ...), ...]

Every other module of the wing imports its types from here: :mod:`.engines` executes :class:`Run` s,
:mod:`.experiment` validates a :class:`Config` and writes the run directory, :mod:`.phase` describes its problem
with :class:`ProblemConfig`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from ..optimizers import Choice, parse_spec, resolve
from ..values import distinct_names
from .functions import PRESETS, BernoulliStream, Bounds, LinearFunctions, PeriodicStream

if TYPE_CHECKING:
    from .problems import LinearProblem

__all__ = ["FIGURE1", "GAMMA_CHARTS", "OVERRIDE_KEYS", "Config", "ProblemConfig", "Run", "plan_runs"]

#: the paper's Figure 1, per setting: (chart title, tag) for TensorBoard's Custom Scalars layout (the panels the
#: figure has, then ours, labelled as such)
FIGURE1 = {
    "online": [("Figure 1, left: R_t/t, online", "average_regret"), ("Figure 1, centre: x_t, online", "x")],
    "stochastic": [
        ("Figure 1, right: x_t, stochastic", "x"),
        ("R_t/t, stochastic (ours; not a panel of Figure 1)", "average_regret"),
    ],
}
#: with ``--gamma``: the paper's Section 3 quantity beside the figure's panels (ours: the paper draws no Γ)
GAMMA_CHARTS = [
    ("Γ_t = √V_t/α_t − √V_{t−1}/α_{t−1} (ours; Section 3's quantity)", "gamma"),
    ("fraction of steps with Γ_t < 0: the step size grew (ours)", "gamma_negative_steps"),
]


@dataclass(frozen=True)
class ProblemConfig:
    """Which problem: a setting, a preset of the counterexample family (C, δ), and raw constants that
    override the preset's when given. ``seed`` is the stochastic stream's seed; ``dtype`` the precision of x and
    of the optimizers' state ("float32", torch's default, or "float64"), in either engine."""

    setting: str = "online"
    preset: str = "paper"
    c: float | None = None
    delta: float | None = None
    rare_coef: float | None = None
    common_coef: float | None = None
    period: int | None = None
    p: float | None = None
    seed: int = 0
    x0: float = 0.0
    bounds: tuple[float, float] = (-1.0, 1.0)
    dtype: str = "float32"

    def constants(self) -> dict:
        """The preset's constants with the raw ones given here on top. Raises ValueError."""
        if self.setting not in ("online", "stochastic"):
            raise ValueError(f"unknown setting {self.setting!r}: choose online or stochastic")
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}: choose from {', '.join(PRESETS)}")
        out = PRESETS[self.preset].constants(self.setting, self.c, self.delta)
        raw = {"rare_coef": self.rare_coef, "common_coef": self.common_coef}
        raw |= {"period": self.period} if self.setting == "online" else {"p": self.p}
        out.update({k: v for k, v in raw.items() if v is not None})
        return out

    def theorem_betas(self) -> tuple[float, float] | None:
        return PRESETS[self.preset].theorem_betas(self.c)

    def with_seed(self, seed: int) -> ProblemConfig:
        return ProblemConfig(**(asdict(self) | {"seed": seed}))

    def describe(self) -> dict:
        """What a summary records: the setting, preset, resolved constants, and what else applies."""
        preset = PRESETS[self.preset]
        out: dict = {"setting": self.setting, "preset": self.preset}
        if preset.default_c is not None:
            out["C"] = preset.default_c if self.c is None else self.c
        if preset.default_delta is not None:
            out["delta"] = preset.default_delta if self.delta is None else self.delta
        out |= self.constants()
        if self.setting == "stochastic":
            out["seed"] = self.seed
        return out | {"x0": self.x0, "bounds": list(self.bounds), "dtype": self.dtype}

    def make(self) -> LinearProblem:
        """A fresh problem module (x = x0), for the Trial: imports torch. Raises ``ValueError`` on bad constants."""
        from .problems import Online, Stochastic

        k = self.constants()
        bounds = Bounds(*self.bounds)
        if self.setting == "online":
            return Online(k["rare_coef"], k["common_coef"], k["period"], self.x0, bounds, self.dtype)
        return Stochastic(k["rare_coef"], k["common_coef"], k["p"], self.seed, self.x0, bounds, self.dtype)

    def functions(self) -> LinearFunctions:
        """The same problem's maths without torch (slopes, F, x*): what the fused engine reads. Raises
        ``ValueError`` on bad constants, as :meth:`make` does."""
        k = self.constants()
        stream = PeriodicStream(k["period"]) if self.setting == "online" else BernoulliStream(k["p"], self.seed)
        return LinearFunctions(stream, k["rare_coef"], k["common_coef"], self.x0, Bounds(*self.bounds), self.dtype)


#: invocation-wide optimizer settings (None: each optimizer's own default); see optimizers.resolve
OVERRIDE_KEYS = ("lr", "beta1", "beta2", "eps", "momentum", "lr_schedule", "beta1_schedule", "beta1_decay")


@dataclass(frozen=True)
class Config:
    problem: ProblemConfig = field(default_factory=ProblemConfig)
    steps: int = 10_000_000
    optimizers: tuple[str, ...] = ("adam", "amsgrad")
    #: invocation-wide values for OVERRIDE_KEYS (lr is swept through ``lrs``)
    overrides: dict = field(default_factory=dict)
    #: step sizes to sweep; None: each optimizer's own (or overrides["lr"])
    lrs: tuple[float, ...] | None = None
    #: stream seeds to sweep (stochastic); None: (problem.seed,)
    seeds: tuple[int, ...] | None = None
    log_every: int = 1000
    #: also log Γ_t and the fraction of steps with Γ_t < 0 (amsgrad_repro.gamma), in either engine
    gamma: bool = False
    #: the fused kernel's threads; None: the CPUs this process may use, at most one per run (windows.thread_count)
    threads: int | None = None
    logdir: str = "logs"
    run_name: str | None = None
    overwrite: bool = False
    engine: str = "auto"
    progress: bool | None = None  # None: a bar only on a terminal
    allow_large: bool = False  # go on past runs.MAX_RUNS runs or runs.MAX_EVENT_BYTES of events
    #: run on Ray: "local" (a local instance), "auto" or "host:port" (join a cluster); None: in this process
    ray: str | None = None
    ray_timeout: float = 120.0  # seconds without a live node before a Ray run gives up (cluster.ClusterLost)


@dataclass(frozen=True)
class Run:
    """One run of an invocation: its name (a path under the run directory), optimizer and seed."""

    name: str
    choice: Choice
    seed: int
    stochastic: bool = True  # False: the seed is unused (online), and the summary records null


def plan_runs(cfg: Config, overrides: dict) -> list[Run]:
    """Every run of the invocation, in order: optimizer, then lr, then seed. ``overrides`` are the invocation-wide
    optimizer values (see :func:`amsgrad_repro.optimizers.resolve`). Raises ValueError."""
    seeds = cfg.seeds if cfg.seeds is not None else (cfg.problem.seed,)
    lrs = cfg.lrs if cfg.lrs is not None else (overrides.get("lr"),)
    sweep_lr, sweep_seed = len(lrs) > 1, len(seeds) > 1
    lr_names = distinct_names(lrs)  # two step sizes that print alike still name two directories
    runs: list[Run] = []
    for spec in cfg.optimizers:
        own_lr = "lr" in parse_spec(spec)[1]  # a spec's own lr is not swept
        for lr in (None,) if own_lr else lrs:
            choice = resolve(spec, overrides | {"lr": lr})
            for seed in seeds:
                name = spec
                if sweep_lr and not own_lr:
                    name += f"/lr={lr_names[lr]}"
                if sweep_seed:
                    name += f"/seed={seed}"
                runs.append(Run(name, choice, seed, cfg.problem.setting == "stochastic"))
    return runs
