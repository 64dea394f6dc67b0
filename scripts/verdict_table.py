"""docs/verdict.md's table of optimizers, from a ``verdict`` run's summary.json.

Usage::

    python scripts/verdict_table.py logs/verdict/table/summary.json > table.md

One row per optimizer, one column per problem. A cell is the problem's verdict (``fails`` if any of its runs
fails, else ``converges`` if any converges, else ``undecided``: amsgrad_repro/synthetic/rule.py) with how many runs
said so; where the problem ran at two β configurations (the optimizer's own and the paper's, theorems 2 and 3) and
they disagree, each is given. Versions of the packages the specs come from are read from this environment.
"""

from __future__ import annotations

import json
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = {"pytorch_optimizer": "pytorch-optimizer", "lion_pytorch": "lion-pytorch", "schedulefree": "schedulefree",
            "prodigyopt": "prodigyopt", "torch": "torch"}  # fmt: skip
NAMES = {"defaults": "own", "paper": "paper", "theorem": "theorem", "spec": "spec's"}


def source(spec: str) -> str:
    """Where a spec's class comes from, with the installed version."""
    name = spec.split(",")[0]
    module = name.split(":")[0].split(".")[0] if ":" in name or name.startswith("torch.") else None
    if module is None:
        return "amsgrad_repro (fused)"
    package = PACKAGES.get(module, module)
    try:
        return f"{package} {metadata.version(package)}"
    except metadata.PackageNotFoundError:
        return package


def cell(problem: str, summary: dict) -> str:
    verdicts = summary["problems"].get(problem)
    if verdicts is None:
        return "not judged (interrupted)"
    v = verdicts["verdict"]
    text = f"{v} ({verdicts['counts'][v]}/{verdicts['runs']})"
    by_config: dict[str, list] = {}
    for run in summary["runs"]:
        if run["name"].split("/")[0] == problem and "verdict" in run:  # an interrupted run has none
            by_config.setdefault(run["name"].split("/")[1], []).append(run["verdict"])
    per = {c: ("fails" if "fails" in vs else "converges" if "converges" in vs else "undecided")
           for c, vs in by_config.items()}  # fmt: skip
    if len(set(per.values())) > 1:
        text += " — " + ", ".join(f"{NAMES.get(c, c)} β's: {w}" for c, w in per.items())
    return text


def main(path: str) -> None:
    summary = json.loads(Path(path).read_text())
    problems = summary["battery"]["problems"]
    print("| optimizer | from | " + " | ".join(problems) + " |")
    print("|---|---|" + "---|" * len(problems))
    for spec, result in summary["optimizers"].items():
        if result is None:
            print(f"| `{spec}` | {source(spec)} | " + " | ".join("not run" for _ in problems) + " |")
            continue
        print(f"| `{spec}` | {source(spec)} | " + " | ".join(cell(p, result) for p in problems) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
