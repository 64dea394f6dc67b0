"""``python -m amsgrad_repro plot RUN_DIR…``: figures from the TensorBoard events of finished runs.

Usage::

    python -m amsgrad_repro plot logs/online/paper logs/stochastic/paper     # the paper's Figure 1
    python -m amsgrad_repro plot logs/logreg/fig2 logs/mlp/fig2              # the paper's Figure 2
    python -m amsgrad_repro plot logs/stochastic/sweep --out sweep            # one setting: R_t/t and x_t
    python -m amsgrad_repro plot logs/online/zoo --xscale linear

Each RUN_DIR is a run directory written by ``online`` or ``stochastic`` (it holds summary.json and one
TensorBoard run per optimizer, lr and seed). The events are read with TensorBoard's own reader.

- Given one online and one stochastic run directory, the figure has Figure 1's three panels: online R_t/t,
  online x_t, stochastic x_t. Otherwise it has two panels (R_t/t, x_t) for each run directory.
- Runs written with ``--gamma`` add a second row: Γ_t (symmetric-log y axis, 0 marked) and the share of steps
  so far with Γ_t < 0, per run directory (ours: the paper draws no Γ; docs/gamma.md).
- Runs that differ only by seed are drawn as their mean with a ±1 standard deviation band.
- By default t is log-scaled in the R_t/t panels (R_t/t starts at hundreds and decays like 1/t, so a linear
  t-axis hides everything but the first steps) and linear in the x_t panels, as in the paper.
- Real-data run directories (``logreg``, ``mlp``, ``cifarnet``; one per model) give Figure 2's arrangement
  instead, each panel in the paper's place (:func:`make_real_figure`): top row logistic regression's training
  and test loss and the network's training loss, bottom row CIFARNET's training and test loss and, in the free
  place, the network's test loss (ours). Training loss on a log scale; one curve per optimizer at its best
  (lr, β2) cell by final training loss (``--cells all``: every cell), mean ± sd over seeds. Titles name the
  paper's panel and what the files were (e.g. ``cifar10 (CIFAR-10, JPEG copy)``).
- The figure is written as PNG and SVG, by default as ``<first run dir>/figure.png`` and ``.svg``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .files import NotAFile, atomic_file, open_regular, read_regular
from .optimizers import ALIASES, ZOO
from .realdata.config import MODEL_DEFAULTS
from .runs import STATUSES, UsageError

_SEED = re.compile(r"^seed=(\d+)$")
#: the largest summary.json plot reads: 1,000,000 runs (the most an invocation may plan) of ~500 bytes each
MAX_SUMMARY_BYTES = 512 << 20
#: the most bytes of event files plot reads for one run: a run's planned events are ~1 GB at most (docs/runs.md),
#: and TensorBoard's reader holds every scalar in memory (~100 bytes each, for 50 bytes on disk)
MAX_EVENT_FILE_BYTES = 1 << 30


def read_summary(path: Path) -> dict:
    """A summary.json, or a :class:`UsageError` naming the file and what is wrong with it."""
    try:
        summary = json.loads(read_regular(path, MAX_SUMMARY_BYTES))
    except NotAFile as e:
        raise UsageError(f"{e}: not a run summary") from None
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{path} is not valid JSON ({e}): the run directory is damaged") from None
    except RecursionError:
        raise UsageError(f"{path} is nested too deeply to be a run summary") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("runs"), list):
        raise UsageError(f"{path} is not a run summary (no list of runs)")
    for row in summary["runs"]:
        if not (isinstance(row, dict) and isinstance(row.get("name"), str) and row.get("status") in STATUSES):
            raise UsageError(f"{path} is not a run summary (a run without a name and a status: {str(row)[:80]})")
        if row["name"].startswith("/") or ".." in row["name"].split("/"):
            raise UsageError(f"{path} names a run outside its directory: {row['name'][:80]}")
    if summary.get("setting") not in ("online", "stochastic") and summary.get("model") not in MODEL_DEFAULTS:
        raise UsageError(f"{path} is not a run summary of this package (no known setting or model)")
    return summary


def read_scalars(directory: Path) -> dict[str, tuple[list[int], list[float]]]:
    """Every scalar tag of one TensorBoard run directory, ``{tag: (steps, values)}``, read with TensorBoard's
    own event reader. A damaged event file is a :class:`UsageError` naming the directory."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    total = 0
    for path in directory.glob("events.out.tfevents.*"):  # what the reader will open: regular files only
        try:
            with open_regular(path, MAX_EVENT_FILE_BYTES) as f:
                total += os.fstat(f.fileno()).st_size
        except NotAFile as e:
            raise UsageError(f"{e}: not a TensorBoard event file") from None
        except OSError as e:
            raise UsageError(f"cannot read {path}: {e.strerror or e}") from None
    if total > MAX_EVENT_FILE_BYTES:
        raise UsageError(
            f"{directory} holds {total:,} bytes of events, more than plot reads ({MAX_EVENT_FILE_BYTES:,} B)"
        )
    acc = EventAccumulator(str(directory), size_guidance={"scalars": 0})
    try:
        acc.Reload()
    except Exception as e:  # the reader raises several types for truncated or foreign files
        raise UsageError(f"cannot read the TensorBoard events in {directory}: {type(e).__name__}: {e}") from None
    out = {}
    for tag in acc.Tags()["scalars"]:
        events = acc.Scalars(tag)
        out[tag] = ([e.step for e in events], [e.value for e in events])
    return out


class PlotError(UsageError):
    """A run directory that cannot be plotted (missing, empty, no events): one line, exit status 2."""


@dataclass
class Series:
    """One curve: a label, its steps, mean and standard deviation across seeds (std is None for one seed)."""

    label: str
    steps: np.ndarray
    mean: np.ndarray
    std: np.ndarray | None
    seeds: int


def display_name(run: str) -> str:
    """``"amsgrad-paper,lr_schedule=sqrt/lr=0.01"`` → ``"AMSGrad (paper, Alg. 2), lr_schedule=sqrt, lr=0.01"``."""
    parts = run.split("/")
    name, *options = parts[0].split(",")
    entry = ZOO.get(ALIASES.get(name, name))
    pretty = entry.display if entry is not None else name
    return ", ".join([pretty, *options, *parts[1:]])


def _read_run(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {tag: (np.array(s), np.array(v, np.float64)) for tag, (s, v) in read_scalars(path).items()}


def load_run_dir(run_dir: Path) -> tuple[str, dict[str, list[Series]]]:
    """(setting, {tag: [Series per optimizer/lr, seeds averaged]}) for one run directory."""
    summary = read_summary(run_dir / "summary.json")  # checked by plot.run: a run directory of this package
    setting = summary["setting"]
    # the invocation's own runs, as its summary lists them (not the layout's file at the root, nor anything else)
    named = [run_dir / r["name"] for r in summary["runs"] if r["status"] != "not started"]
    event_dirs = [d for d in named if any(d.glob("events.out.tfevents.*"))]
    if not event_dirs:
        raise PlotError(f"{run_dir} holds no TensorBoard events of its runs")
    groups: dict[str, list[dict]] = {}
    for d in event_dirs:
        rel = d.relative_to(run_dir).parts
        key = "/".join(p for p in rel if not _SEED.match(p)) or d.name
        groups.setdefault(key, []).append(_read_run(d))
    series: dict[str, list[Series]] = {"average_regret": [], "x": [], "gamma": [], "gamma_negative_steps": []}
    for key, runs in groups.items():
        for tag in series:
            curves = [r[tag] for r in runs if tag in r]
            if not curves:
                continue
            n = min(len(c[0]) for c in curves)  # an interrupted seed may be shorter
            steps = curves[0][0][:n]
            values = np.stack([c[1][:n] for c in curves])
            std = values.std(axis=0, ddof=1) if len(curves) > 1 else None
            series[tag].append(Series(display_name(key), steps, values.mean(axis=0), std, len(curves)))
    if not any(series.values()):
        raise PlotError(f"{run_dir} has events but no x or average_regret scalars")
    return setting, series


def _draw(ax, series: list[Series], ylabel: str, title: str, xscale: str) -> None:
    for s in series:
        label = s.label if s.seeds == 1 else f"{s.label}; mean ± sd over {s.seeds} seeds"
        (line,) = ax.plot(s.steps, s.mean, label=label, linewidth=1.2)
        if s.std is not None:
            ax.fill_between(s.steps, s.mean - s.std, s.mean + s.std, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xscale(xscale)
    ax.set_xlabel("t")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if ylabel.startswith("Γ_t") and series:
        # Γ spans orders of magnitude on both sides of 0 (the rare gradient's jump, then the small decays)
        finite = np.concatenate([np.abs(s.mean[np.isfinite(s.mean) & (s.mean != 0)]) for s in series])
        if finite.size:
            ax.set_yscale("symlog", linthresh=float(np.percentile(finite, 5)))
        ax.axhline(0.0, color="k", linewidth=0.8)
    if ylabel == "R_t / t" and series:
        everything = np.concatenate([s.mean for s in series])
        if xscale == "log":
            if everything.size and np.all(everything > 0):
                # R_t/t falls like 1/t from about 1000: on log-log axes every part of every curve is visible
                ax.set_yscale("log")
            # otherwise (a mean that goes negative) matplotlib's limits from everything drawn: on a log-t axis
            # the first steps are in view, so limits taken from the last 99 % of t would cut the curves (issue 27)
            return
        # a linear t-axis: skip the first 1% of t, where R_t/t is in the hundreds (a sliver at the left edge)
        tail = [s.mean[s.steps >= s.steps[-1] / 100] for s in series]
        values = np.concatenate([v for v in tail if v.size])
        if values.size and np.all(np.isfinite(values)):
            lo, hi = float(values.min()), float(values.max())
            pad = 0.05 * (hi - lo or 1.0)
            ax.set_ylim(min(0.0, lo - pad), hi + pad)


def is_real_data(run_dir: Path) -> bool:
    """Whether ``run_dir`` was written by ``logreg``, ``mlp`` or ``cifarnet`` (its summary names a model)."""
    path = run_dir / "summary.json"
    return path.is_file() and "model" in read_summary(path)


def _cell_label(cell: dict) -> str:
    parts = [display_name(cell["optimizer"])]
    if cell["lr"] is not None:
        parts.append(f"lr={cell['lr']:g}")
    if cell["beta2"] is not None:
        parts.append(f"β2={cell['beta2']:g}")
    return ", ".join(parts)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_real_summary(path: Path, summary: dict) -> None:
    """Every field the figure reads, of the type it reads it as: a damaged or hand-edited summary.json is one
    line naming the field, never a KeyError or TypeError from deep inside the drawing."""

    def damaged(what: str) -> PlotError:
        return PlotError(f"{path} is damaged: {what}")

    data = summary.get("data")
    if not (isinstance(data, dict) and isinstance(data.get("name"), str) and type(data.get("train_samples")) is int):
        raise damaged("'data' must name the data set and its train_samples")
    for where, cells in (("cells", summary["cells"]), ("best", list(summary["best"].values()))):
        for cell in cells:
            if not (
                isinstance(cell, dict)
                and isinstance(cell.get("optimizer"), str)
                and all(cell.get(k) is None or _number(cell.get(k)) for k in ("lr", "beta2"))
                and isinstance(cell.get("names"), list)
                and cell["names"]
                and all(isinstance(n, str) for n in cell["names"])
            ):
                raise damaged(f"a cell in '{where}' is not an optimizer, lr, β2 and run names: {str(cell)[:80]}")
    for row in summary["runs"]:
        if row["status"] == "complete" and type(row.get("iterations_done")) is not int:
            raise damaged(f"the complete run {row['name'][:80]} has no whole iterations_done")


def load_real_run_dir(run_dir: Path, which: str = "best") -> tuple[dict, dict[str, list[Series]]]:
    """(summary, {"train_loss"|"test_loss": [Series per cell, seeds averaged]}) for a real-data run directory:
    each optimizer's best cell (``which="best"``, by final training loss) or every cell (``"all"``). A run whose
    events end before the step summary.json says it reached is reported as damaged."""
    summary = read_summary(run_dir / "summary.json")
    if not isinstance(summary.get("cells"), list) or not isinstance(summary.get("best"), dict):
        raise PlotError(f"{run_dir / 'summary.json'} has no cells or best cells: not a real-data summary")
    _check_real_summary(run_dir / "summary.json", summary)
    cells = list(summary["best"].values()) if which == "best" else summary["cells"]
    if not cells:
        raise PlotError(f"{run_dir} has no complete run to draw")
    runs = {r["name"]: r for r in summary["runs"]}
    series: dict[str, list[Series]] = {"train_loss": [], "test_loss": []}
    for cell in cells:
        members = [n for n in cell["names"] if runs.get(n, {}).get("status") == "complete"]
        if not members:
            continue
        read = []
        for name in members:
            scalars = _read_run(run_dir / name)
            for tag in ("train_loss", "test_loss", "test_accuracy"):  # a complete run logs each at its end
                last = int(scalars[tag][0][-1]) if tag in scalars else 0
                if last != runs[name]["iterations_done"]:
                    raise PlotError(
                        f"the {tag} events in {run_dir / name} end at iteration {last}, but summary.json says "
                        f"{runs[name]['iterations_done']}: the event file is truncated or damaged"
                    )
            read.append(scalars)
        for tag in series:
            curves = [r[tag] for r in read]
            n = min(len(c[0]) for c in curves)
            values = np.stack([c[1][:n] for c in curves])
            std = values.std(axis=0, ddof=1) if len(curves) > 1 else None
            series[tag].append(Series(_cell_label(cell), curves[0][0][:n], values.mean(axis=0), std, len(curves)))
    return summary, series


def make_real_figure(run_dirs: list[Path], which: str = "best"):
    """The paper's Figure 2 arrangement, two rows by three columns, each panel in the paper's place
    (:data:`~.realdata.config.FIGURE2`, the same as the Custom Scalars layout): top row logistic regression's
    training loss (left) and test loss (centre), the network's training loss (right); bottom row CIFARNET's
    training loss and test loss, and in the free place (bottom right) the network's test loss, titled as ours.
    One run directory per model; a model not given leaves its places empty (a row with nothing is left out),
    never filled by another. One curve per optimizer (its best cell, or every cell), mean ± sd over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .realdata.config import FIGURE2

    loaded = [load_real_run_dir(d, which) for d in run_dirs]
    by_model: dict[str, tuple[Path, dict, dict[str, list[Series]]]] = {}
    for run_dir, (summary, series) in zip(run_dirs, loaded, strict=True):
        model = summary.get("model")
        if model not in FIGURE2:
            raise PlotError(f"{run_dir / 'summary.json'} names no model of Figure 2 ({', '.join(FIGURE2)})")
        if model in by_model:
            raise PlotError(
                f"{by_model[model][0]} and {run_dir} are both {model} runs: Figure 2 has one place per model "
                "(plot them one at a time, or pass --cells all on one run directory)"
            )
        by_model[model] = (run_dir, summary, series)
    panels = [
        (place, title, tag, model) for model in by_model for title, tag, place in FIGURE2[model][1] if place is not None
    ]
    rows = sorted({place[0] for place, *_ in panels})
    fig, axes = plt.subplots(len(rows), 3, figsize=(19, 4.6 * len(rows)), squeeze=False)
    used = set()
    for (row, col), title, tag, model in panels:
        ax = axes[rows.index(row)][col]
        _, summary, series = by_model[model]
        data = summary["data"]
        where = f"{_data_label(data)} ({data['train_samples']:,} train)"
        _draw(ax, series[tag], tag.replace("_", " "), f"{title}\n{where}", "linear")
        ax.set_xlabel("iteration")
        if tag == "train_loss":
            ax.set_yscale("log")
        ax.legend(fontsize=7, loc="upper right", frameon=False)
        used.add((rows.index(row), col))
    for r in range(len(rows)):
        for c in range(3):
            if (r, c) not in used:
                axes[r][c].remove()  # a place of a model not given: left empty, not filled by another
    fig.tight_layout()
    return fig


def _data_label(data: dict) -> str:
    """What a run read, as its summary recorded it: the data set's name, and the files' own description where
    the loader recognised them (e.g. CIFAR-10 rebuilt from JPEG copies, not the official files)."""
    from .realdata.provenance import label

    files = data.get("files")
    return label(str(data["name"]), files if isinstance(files, str) else None)


def make_figure(run_dirs: list[Path], xscale: str = "auto"):
    """The matplotlib Figure for these run directories (see the module docstring for the layout)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not run_dirs:
        raise PlotError("give at least one run directory")
    loaded = [(d, *load_run_dir(d)) for d in run_dirs]
    settings = [setting for _, setting, _ in loaded]
    panels = []  # (series, ylabel, title, kind)
    if len(loaded) == 2 and sorted(settings) == ["online", "stochastic"]:
        online = next(s for _, setting, s in loaded if setting == "online")
        stochastic = next(s for _, setting, s in loaded if setting == "stochastic")
        panels = [
            (online["average_regret"], "R_t / t", "online: R_t / t", "regret"),
            (online["x"], "x_t", "online: x_t", "x"),
            (stochastic["x"], "x_t", "stochastic: x_t", "x"),
        ]
    else:
        for d, setting, series in loaded:
            panels.append((series["average_regret"], "R_t / t", f"{setting} ({d.name}): R_t / t", "regret"))
            panels.append((series["x"], "x_t", f"{setting} ({d.name}): x_t", "x"))
    gamma = []  # runs written with --gamma: a second row, Γ_t and the share of steps with Γ_t < 0 (ours)
    for d, setting, series in loaded:
        if series["gamma"]:
            gamma.append((series["gamma"], "Γ_t", f"{setting} ({d.name}): Γ_t (ours; Section 3)", "gamma"))
            gamma.append((series["gamma_negative_steps"], "steps with Γ_t < 0", f"{setting} ({d.name}): share of "
                          "steps with Γ_t < 0 (ours)", "gamma"))  # fmt: skip
    columns = max(len(panels), len(gamma))
    rows = 2 if gamma else 1
    fig, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 4.2 * rows), squeeze=False)
    for row, row_panels in enumerate([panels, gamma][:rows]):
        for ax, (series, ylabel, title, kind) in zip(axes[row], row_panels, strict=False):
            scale = xscale if xscale != "auto" else ("log" if kind in ("regret", "gamma") else "linear")
            _draw(ax, series, ylabel, title, scale)
        for ax in axes[row][len(row_panels) :]:
            ax.set_visible(False)
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes[0][1:]:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), frameon=False)
    legend_rows = -(-len(labels) // 4)
    fig.tight_layout(rect=(0, (0.06 + 0.05 * legend_rows) / rows, 1, 1))
    return fig


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR", help="run directories (LOGDIR/SETTING/NAME)")
    p.add_argument(
        "--out", type=Path, default=None, help="output path without extension (default: FIRST_RUN_DIR/figure)"
    )
    p.add_argument(
        "--xscale", choices=["auto", "linear", "log"], default="auto", help="t axis (auto: log for R_t/t only)"
    )
    p.add_argument(
        "--cells",
        choices=["best", "all"],
        default="best",
        help="real-data runs: each optimizer's best (lr, β2) cell by final training loss, or every cell",
    )


def run(args: argparse.Namespace) -> int:
    import matplotlib.pyplot as plt

    for d in args.run_dirs:
        if not d.is_dir():
            raise PlotError(f"{d} is not a directory")
        if not (d / "summary.json").exists():  # a setting folder (logs/online), a run's own folder (…/adam)
            raise PlotError(f"{d} has no summary.json: give run directories, LOGDIR/SETTING/RUN_NAME")
        read_summary(d / "summary.json")
    if args.out is not None and (str(args.out) in ("", ".") or args.out.name in ("", ".", "..")):
        raise PlotError(f"--out must name a file (without extension), got {str(args.out)!r}")
    real = [is_real_data(d) for d in args.run_dirs]
    if any(real) and not all(real):
        raise PlotError("give either synthetic (online/stochastic) or real-data (logreg/mlp/cifarnet) run directories")
    if all(real):
        fig = make_real_figure(args.run_dirs, args.cells)
    else:
        fig = make_figure(args.run_dirs, args.xscale)
    out = args.out if args.out is not None else args.run_dirs[0] / "figure"
    if out.is_dir():
        out = out / "figure"
    out = out.with_suffix("") if out.suffix in (".png", ".svg") else out
    png, svg = out.parent / f"{out.name}.png", out.parent / f"{out.name}.svg"  # not with_suffix: "lr-0.01"
    for path in (out, png, svg):
        if path.exists() and not path.is_file():  # /dev/null, a fifo: not a place for a figure
            plt.close(fig)
            raise PlotError(f"--out {path} is not a regular file")
    path = png
    try:  # each figure is written whole or not at all, never through a link (files.atomic_file)
        out.parent.mkdir(parents=True, exist_ok=True)
        for path, kwargs in ((png, {"dpi": 130}), (svg, {})):
            with atomic_file(path) as f:
                fig.savefig(f, format=path.suffix[1:], **kwargs)
    except OSError as e:
        raise PlotError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        plt.close(fig)
    print(f"wrote {png} and {svg}")
    return 0
