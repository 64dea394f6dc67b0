"""The phase diagram's heat maps (``python -m amsgrad_repro phase``): drawing only, from a grid's arrays.

Usage::

    from amsgrad_repro.synthetic.phase_map import heat_map_figure, map_names

    fig = heat_map_figure("adam", beta1s, beta2s, final_x, regret, "adam on online/paper", verdict=codes)
    fig.savefig("phase_adam.png")

Each panel is a map over (1 − β2 on a log axis, β1) with the curve β1 = √β2 (Theorems 2-4 assume β1 < √β2, below
it) and the paper's (0.9, 0.99) marked. With ``verdict`` (each cell's verdict by the rule of
:mod:`.rule`, as an index into :data:`~.rule.VERDICTS`, NaN where not judged), a solid line around the cells that
``fail``: the verdict's boundary. With ``theorem_cell`` (Theorem 1's β1 = 0, β2 = 1/(1+C²)), that cell is marked:
the theorem proves Adam fails there.
"""

from __future__ import annotations

import numpy as np

from .rule import VERDICTS

#: a verdict's code in the arrays (an index into VERDICTS)
FAILS = VERDICTS.index("fails")


def _edges_linear(values: np.ndarray) -> np.ndarray:
    if len(values) == 1:
        return np.array([values[0] - 0.5, values[0] + 0.5])
    mid = (values[1:] + values[:-1]) / 2
    return np.concatenate([[2 * values[0] - mid[0]], mid, [2 * values[-1] - mid[-1]]])


def boundary(inside: np.ndarray, x_edges: np.ndarray, y_edges: np.ndarray) -> list:
    """The cell edges between a cell ``inside`` (rows: y, columns: x) and a neighbour that is not: segments
    ``[(x0, y0), (x1, y1)]`` along the grid's own edges, so a region at the map's border is outlined too."""
    x, y = x_edges, y_edges
    between_columns = np.argwhere(inside[:, 1:] != inside[:, :-1])  # (i, j): cells (i, j) and (i, j + 1)
    between_rows = np.argwhere(inside[1:, :] != inside[:-1, :])  # (i, j): cells (i, j) and (i + 1, j)
    return [[(x[j + 1], y[i]), (x[j + 1], y[i + 1])] for i, j in between_columns] + [
        [(x[j], y[i + 1]), (x[j + 1], y[i + 1])] for i, j in between_rows
    ]


def heat_map_figure(spec: str, beta1s, beta2s, final_x, regret, title: str, negative=None, verdict=None,
                    theorem_cell: tuple[float, float] | None = None):  # fmt: skip
    """Two panels (final x, R_T/T) over (1 − β2 on a log axis, β1), with β1 = √β2 and (0.9, 0.99) marked; with
    ``negative``, a third: the fraction of steps with Γ_t < 0; ``verdict`` and ``theorem_cell``: see the module
    docstring."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection
    from matplotlib.colors import Normalize
    from matplotlib.lines import Line2D

    u = 1.0 - beta2s  # x axis: 1 − β2, log scale, inverted so that β2 grows to the right
    log_u = np.log10(u)
    u_edges = 10 ** _edges_linear(log_u) if len(u) > 1 else np.array([u[0] * 2, u[0] / 2])
    b1_edges = _edges_linear(beta1s)
    panels = [
        (final_x, "final x", "RdBu_r", Normalize(-1, 1)),
        (regret, "R_T / T", "viridis", None),
    ]
    if negative is not None:
        panels.append((negative, "steps with Γ_t < 0 (fraction)", "magma", Normalize(0, 1)))
    fails = None
    if verdict is not None and len(u) > 1 and len(beta1s) > 1:
        fails = np.where(np.isfinite(verdict), (verdict == FAILS).astype(float), 0.0)
        if not 0 < fails.sum() < fails.size:  # all or nothing fails: no boundary inside the map
            fails = None
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.8))
    for ax, (values, label, cmap, norm) in zip(axes, panels, strict=True):
        mesh = ax.pcolormesh(u_edges, b1_edges, values, cmap=cmap, norm=norm, shading="flat")
        fig.colorbar(mesh, ax=ax, label=label)
        ax.set_xscale("log")
        ax.set_xlim(u_edges.max(), u_edges.min())
        ax.set_ylim(b1_edges.min(), b1_edges.max())
        curve_u = np.geomspace(u_edges.min(), min(u_edges.max(), 1.0), 400)
        ax.plot(curve_u, np.sqrt(1.0 - curve_u), "k--", linewidth=1.2, label="β1 = √β2")
        ax.plot([0.01], [0.9], marker="*", markersize=14, color="gold", markeredgecolor="k", linestyle="none",
                label="paper: (0.9, 0.99)")  # fmt: skip
        if theorem_cell is not None:
            ax.plot([1.0 - theorem_cell[1]], [theorem_cell[0]], marker="X", markersize=11, color="white",
                    markeredgecolor="k", linestyle="none", label="Theorem 1's cell")  # fmt: skip
        handles, labels = ax.get_legend_handles_labels()
        if fails is not None:
            ax.add_collection(LineCollection(boundary(fails, u_edges, b1_edges), colors="k", linewidths=1.8))
            handles.append(Line2D([], [], color="k", linewidth=1.8))
            labels.append("verdict's boundary (fails inside)")
        ticks = [t for t in (0.5, 0.9, 0.99, 0.999, 0.9999, 0.99999) if u_edges.min() <= 1 - t <= u_edges.max()]
        ax.set_xticks([1 - t for t in ticks])
        ax.set_xticklabels([f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("β2  (spaced by log(1 − β2))")
        ax.set_ylabel("β1")
        ax.set_title(f"{label}")
        ax.legend(handles, labels, loc="best", fontsize=8, framealpha=0.8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def map_names(specs: list[str]) -> list[str]:
    """Each optimizer's heat-map file name without extension: ``phase_<spec>`` with ``,`` → ``_`` and ``=`` →
    ``-`` (``phase_adam_lr-0.01``), and any other character a file name handles badly → ``-``; a name two specs
    would share gets the spec's position appended, so no map ever overwrites another."""
    names: list[str] = []
    for k, spec in enumerate(specs):
        safe = "".join(c if c.isalnum() or c in "-_.+" else "-" for c in spec.replace(",", "_").replace("=", "-"))
        name = f"phase_{safe[:120]}"
        names.append(f"{name}-{k}" if name in names else name)
    return names
