"""The (β1, β2) grid of ``phase``, computed: every cell a fused-engine run, in batches in this process or as Ray
tasks, stopped cleanly by a signal, each finished cell judged by :mod:`.rule` when asked. No files, no figure:
:mod:`.phase` (the command) writes those.

Usage::

    from amsgrad_repro.synthetic.config import ProblemConfig
    from amsgrad_repro.synthetic.grid import beta1_grid, beta2_grid, run_grid

    grid = run_grid(ProblemConfig(), ["adam"], beta1_grid(0, 0.9, 10), beta2_grid(0.5, 0.999, 10), 100_000)
    grid.final_x[0]            # (10, 10): x_T of each cell, NaN where a cell did not finish
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from ..cluster import Cluster, ClusterLost
from ..optimizers import resolve
from ..signals import defer_signals
from .config import ProblemConfig
from .rule import VERDICTS, judge, log_every_for

#: cells per fused call: enough to fill the lane kernel's blocks on every core (:mod:`.lanes`); a signal loses
#: nothing by it (the cells of a cut batch are kept with the step they reached)
BATCH = 2048


def beta1_grid(lo: float, hi: float, n: int) -> np.ndarray:
    return np.linspace(lo, hi, n) if n > 1 else np.array([lo])


def beta2_grid(lo: float, hi: float, n: int) -> np.ndarray:
    """n values from lo to hi, evenly spaced in log(1 − β2)."""
    if n == 1:
        return np.array([lo])
    return 1.0 - np.geomspace(1.0 - lo, 1.0 - hi, n)


@dataclass
class Grid:
    """What :func:`run_grid` computed: arrays of shape (optimizers, len(beta1s), len(beta2s)), NaN where a cell
    did not finish; unpacks as ``final_x, regret, interrupted``. A cell a signal stopped part-way keeps, in
    ``stopped_x``, ``stopped_regret`` and ``steps_done``, where it was (it is not drawn in the maps)."""

    final_x: np.ndarray
    regret: np.ndarray
    interrupted: bool = False
    #: steps each cell ran (T for a finished one, 0 for one never started)
    steps_done: np.ndarray | None = None
    #: x and R_t/t where a signal stopped an unfinished cell (NaN elsewhere)
    stopped_x: np.ndarray | None = None
    stopped_regret: np.ndarray | None = None
    #: cells whose Ray task raised: ((k, i, j), error)
    failed: list = field(default_factory=list)
    #: the ClusterLost that stopped a Ray run early, if one did
    lost: Exception | None = None
    #: with ``gamma``: the fraction of steps 2..T with Γ_t < 0 per finished cell (NaN elsewhere); else None
    negative: np.ndarray | None = None
    #: with ``verdict``: each finished cell's verdict, an index into :data:`~.rule.VERDICTS` (NaN elsewhere)
    verdict: np.ndarray | None = None

    def __iter__(self):
        return iter((self.final_x, self.regret, self.interrupted))


def run_grid(
    problem_cfg: ProblemConfig,
    specs: list[str],
    beta1s: np.ndarray,
    beta2s: np.ndarray,
    steps: int,
    overrides: dict | None = None,
    bar=None,
    cluster: Cluster | None = None,
    gamma: bool = False,
    verdict: bool = False,
) -> Grid:
    """Every cell through the fused engine: in batches of :data:`BATCH` through :func:`simulate` in this process,
    or, with ``cluster``, as Ray tasks of :func:`~amsgrad_repro.synthetic.engines.ray_chunk` cells (one CPU
    each). A signal stops it with the finished cells kept (``interrupted``). With ``gamma``, each finished cell's
    fraction of steps with Γ_t < 0 too (:attr:`Grid.negative`); with ``verdict``, its verdict
    (:attr:`Grid.verdict`: the x_t logged every :func:`~.rule.log_every_for` steps, judged by :func:`~.rule.judge`;
    the logging does not change a cell's numbers)."""
    from .fused import FusedRun, simulate  # imported where used: building the CLI's parser loads no kernel

    overrides = {k: v for k, v in (overrides or {}).items() if v is not None and k not in ("beta1", "beta2")}
    shape = (len(specs), len(beta1s), len(beta2s))
    cells = _Cells(shape)  # (k, i, j) made a batch at a time: a list of 10⁸ tuples would be 8 GB
    grid = Grid(np.full(shape, np.nan), np.full(shape, np.nan), steps_done=np.zeros(shape, np.int64),
                stopped_x=np.full(shape, np.nan), stopped_regret=np.full(shape, np.nan),
                negative=np.full(shape, np.nan) if gamma else None,
                verdict=np.full(shape, np.nan) if verdict else None)  # fmt: skip
    log_every = log_every_for(steps) if verdict else steps

    def choice(k: int, i: int, j: int):
        return resolve(specs[k], overrides | {"beta1": float(beta1s[i]), "beta2": float(beta2s[j])})

    try:
        if cluster is not None:
            _run_grid_on_ray(cluster, problem_cfg, cells, choice, steps, bar, grid, gamma, log_every)
            return grid
        problem = problem_cfg.functions()
        for start in range(0, len(cells), BATCH):
            batch = cells[start : start + BATCH]
            runs = [FusedRun(choice(k, i, j)) for k, i, j in batch]
            on_window = None if bar is None else _advance(bar, len(runs))
            logged: list = []
            on_log = functools.partial(_keep_log, logged) if verdict else None
            result = simulate([problem], runs, steps, log_every=log_every, on_window=on_window, on_log=on_log,
                              dtype=problem.dtype, gamma=gamma)  # fmt: skip
            if result.interrupted:  # Ctrl-C inside the batch: its cells stop part-way, and say where
                for (k, i, j), x, r in zip(batch, result.x, result.average_regret, strict=True):
                    grid.stopped_x[k, i, j], grid.stopped_regret[k, i, j] = x, r
                    grid.steps_done[k, i, j] = result.steps_done
                grid.interrupted = True
                break
            for (k, i, j), x, r in zip(batch, result.x, result.average_regret, strict=True):
                grid.final_x[k, i, j], grid.regret[k, i, j] = x, r
                grid.steps_done[k, i, j] = steps
            if gamma:
                for (k, i, j), f in zip(batch, result.gamma_negative_steps, strict=True):
                    grid.negative[k, i, j] = f
            if verdict:
                ts = np.concatenate([t for t, _, _ in logged])
                xs, rs = (np.concatenate([entry[n] for entry in logged], axis=1) for n in (1, 2))
                _judge(grid, batch, ts, xs, rs, problem, steps)
            if result.stop_requested:  # Ctrl-C in the batch's last window: keep it, start no other
                grid.interrupted = True
                break
    except KeyboardInterrupt:  # Ctrl-C between batches (or while waiting for Ray)
        grid.interrupted = True
    except ClusterLost as e:
        grid.interrupted, grid.lost = True, e
    return grid


class _Cells:
    """The cells (k, i, j) of a grid of ``shape`` in row-major order, as a sequence that makes each tuple only when
    it is indexed or sliced (``cells[a:b]`` is a list of b − a tuples), so the grid's size costs no memory."""

    def __init__(self, shape: tuple[int, int, int]) -> None:
        self.shape = shape

    def __len__(self) -> int:
        return self.shape[0] * self.shape[1] * self.shape[2]

    def __getitem__(self, index: slice) -> list[tuple[int, int, int]]:
        _, n1, n2 = self.shape
        return [(c // (n1 * n2), c // n2 % n1, c % n2) for c in range(len(self))[index]]


def _keep_log(logged: list, t, x, r) -> None:
    """simulate's on_log: a copy of the logged steps, x_t (as float64) and R_t/t."""
    logged.append((t.copy(), x.astype(np.float64), r.copy()))


def _judge(grid: Grid, cells, ts, xs, rs, problem, steps: int) -> None:
    """Each cell's verdict from its logged x_t and R_t/t (rows of ``xs``, ``rs`` in ``cells``' order)."""
    lo, hi = problem.bounds.lo, problem.bounds.hi
    for cell, x, r in zip(cells, xs, rs, strict=True):
        grid.verdict[cell] = VERDICTS.index(judge(ts, x, r, problem.x_star, lo, hi, steps).verdict)


def _run_grid_on_ray(cluster: Cluster, problem_cfg: ProblemConfig, cells, choice, steps: int, bar, grid: Grid,
                     gamma: bool = False, log_every: int | None = None) -> None:  # fmt: skip
    from .engines import fused_task, ray_chunk

    log_every = log_every or steps
    size = ray_chunk(len(cells), cluster.cpus(), steps, -(-steps // log_every) + 1)
    jobs = []
    for start in range(0, len(cells), size):
        chunk = cells[start : start + size]
        runs = [(choice(*cell), 0) for cell in chunk]
        jobs.append((chunk, ([problem_cfg], runs, steps, log_every, problem_cfg.dtype, gamma)))
    problem = problem_cfg.functions() if grid.verdict is not None else None  # the rule's x*, F: once, not a task
    results = cluster.run(fused_task, jobs, num_cpus=1)
    try:
        for chunk, result in results:
            with defer_signals(reraise=True):  # a result is recorded whole, or not at all
                if isinstance(result, dict):
                    for (k, i, j), x, r in zip(chunk, result["final_x"], result["final_regret"], strict=True):
                        grid.final_x[k, i, j], grid.regret[k, i, j] = x, r
                        grid.steps_done[k, i, j] = steps
                    if gamma:
                        for (k, i, j), f in zip(chunk, result["final_negative"], strict=True):
                            grid.negative[k, i, j] = f
                    if grid.verdict is not None:
                        series = result["series"]
                        xs = series["x"].astype(np.float64)  # as in this process: the average in float64
                        _judge(grid, chunk, result["ts"], xs, series["average_regret"], problem, steps)
                else:
                    grid.failed += [(cell, result.error) for cell in chunk]
                if bar is not None:
                    bar.update(steps * len(chunk))
    finally:
        results.close()


def _advance(bar, runs: int):
    """on_window callback: a window of n steps advances the bar by n × runs run-steps."""
    return lambda n: bar.update(n * runs)
