"""Build the arnb wheel and check that a student's ``pip install`` gets everything the notebooks
use; then, where a Python 3.12 with torch is at hand, install it there and run a chapter.

    python tools/check_wheel.py [--python /path/to/python3.12] [--recipe markov-chain]

1. ``pip wheel`` builds the wheel from this checkout (no build isolation: nothing downloaded).
2. Static checks, on any Python: every module of ``arnb/`` is in the wheel, every ``arnb``
   module a notebook imports is in it, and every other module a notebook imports is the
   standard library's, a declared dependency's, or the Jupyter kernel's own (IPython).
3. With a Python 3.12 (``--python``, else ``python3.12`` on PATH) that imports torch and
   torchvision: a fresh virtual environment that sees that interpreter's packages (torch for
   Python 3.12 is gigabytes; this never downloads it), the wheel installed into it, every module
   of the wheel imported, and one recipe run under the ``smoke`` profile, from a folder outside
   the checkout so that the installed package is the one tested. Without such a Python this
   part is skipped with a message saying so, and the exit status is that of the static checks.

Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Modules a notebook may import that no dependency declares: the kernel running it brings them.
KERNEL_MODULES = {"IPython", "ipywidgets"}
# Import names that differ from the distribution's name in pyproject.toml.
DIST_OF = {"PIL": "pillow", "yaml": "pyyaml", "sklearn": "scikit-learn"}


def build_wheel(out: Path) -> Path:
    """The wheel of this checkout, built into ``out`` from a copy of what the build reads
    (setuptools builds in the source folder, which would leave a ``build/`` in the checkout)."""
    src = out / "src"
    src.mkdir()
    for name in ["pyproject.toml", "README.md", *(p.name for p in ROOT.glob("LICENSE*"))]:
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "arnb", src / "arnb", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(out), str(src)],
        check=True,
    )
    (wheel,) = out.glob("arnb-*.whl")
    return wheel


def wheel_modules(wheel: Path) -> set[str]:
    """Dotted names of the modules and packages in ``wheel``."""
    names = set()
    for name in zipfile.ZipFile(wheel).namelist():
        if name.endswith(".py") and not name.split("/")[0].endswith((".dist-info", ".data")):
            parts = name[:-3].split("/")
            names.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def source_modules() -> set[str]:
    """Dotted names of the modules and packages under ``arnb/`` in this checkout."""
    names = set()
    for path in (ROOT / "arnb").rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        names.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def notebook_imports(paths: list[Path]) -> tuple[set[str], set[str]]:
    """``(modules, from_names)`` a set of notebooks imports: ``import m`` and ``from m import
    x`` give ``m``; the latter also gives ``m.x`` in ``from_names`` (a submodule or a name)."""
    modules, from_names = set(), set()
    for path in paths:
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] != "code":
                continue
            lines = "".join(cell["source"]).splitlines()
            # IPython magics and shell lines are not Python: an indented `pass` keeps blocks.
            src = "\n".join(re.sub(r"^(\s*)[%!].*", r"\1pass", line) for line in lines)
            for node in ast.walk(ast.parse(src)):
                if isinstance(node, ast.Import):
                    modules.update(a.name for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    modules.add(node.module)
                    from_names.update(f"{node.module}.{a.name}" for a in node.names)
    return modules, from_names


def declared_dependencies() -> set[str]:
    """Normalised names of the distributions pyproject.toml's ``dependencies`` list."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {re.split(r"[<>=!~ ;\[]", d, maxsplit=1)[0].lower() for d in project["dependencies"]}


def static_problems(wheel: Path, notebooks: list[Path]) -> list[str]:
    """What a student installing ``wheel`` would miss to run ``notebooks``."""
    problems = []
    in_wheel = wheel_modules(wheel)
    for name in sorted(source_modules() - in_wheel):
        problems.append(f"module {name} of the checkout is not in the wheel")
    modules, from_names = notebook_imports(notebooks)
    for name in sorted(m for m in modules if m.split(".")[0] == "arnb"):
        if name not in in_wheel:
            problems.append(f"the notebooks import {name}, which the wheel lacks")
    for name in sorted(n for n in from_names if n.split(".")[0] == "arnb"):
        parent, _, child = name.rpartition(".")
        # a submodule must be in the wheel; a name defined in a module is checked on import
        if (ROOT / Path(*parent.split("."), child)).with_suffix(".py").exists() or (
            ROOT / Path(*parent.split("."), child) / "__init__.py"
        ).exists():
            if name not in in_wheel:
                problems.append(f"the notebooks import {name}, which the wheel lacks")
    deps = declared_dependencies()
    for top in sorted({m.split(".")[0] for m in modules} - {"arnb"}):
        if top in sys.stdlib_module_names or top in KERNEL_MODULES:
            continue
        if DIST_OF.get(top, top).lower() not in deps:
            problems.append(f"the notebooks import {top}, which no dependency declares")
    return problems


def find_python312(explicit: str | None) -> tuple[str | None, str]:
    """A Python 3.12 that imports torch and torchvision, or None and why not."""
    if explicit:
        candidates = [explicit]
    else:
        candidates = [shutil.which("python3.12"), "/usr/bin/python3.12"]
        candidates += sorted(
            str(p) for p in Path.home().glob(".pyenv/versions/3.12*/bin/python3.12")
        )
    reasons = []
    for python in dict.fromkeys(c for c in candidates if c and Path(c).exists()):
        probe = subprocess.run(
            [python, "-c", "import sys, torch, torchvision; print(sys.version_info[:2])"],
            capture_output=True,
            text=True,
        )
        if probe.returncode != 0:
            lines = probe.stderr.strip().splitlines() or ["?"]
            error = next((x for x in reversed(lines) if "Error" in x), lines[0])
            reasons.append(f"{python}: {error.strip()}")
        elif probe.stdout.strip() != "(3, 12)":
            reasons.append(f"{python} is Python {probe.stdout.strip()}, not 3.12")
        else:
            return python, ""
    return None, "; ".join(reasons) or "no Python 3.12 found (pass --python)"


def runtime_check(python: str, wheel: Path, recipe: str, work: Path) -> None:
    """Install ``wheel`` into a fresh venv of ``python`` and run it; raises on failure."""
    venv = work / "venv312"
    subprocess.run([python, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    subprocess.run([py, "-m", "pip", "install", "-q", str(wheel)], check=True)
    modules = sorted(wheel_modules(wheel))
    code = f"import importlib\nfor m in {modules!r}:\n    importlib.import_module(m)\n"
    cwd = work / "elsewhere"  # not the checkout: the installed package is the one imported
    cwd.mkdir()
    subprocess.run([py, "-c", code], check=True, cwd=cwd)
    print(f"imported all {len(modules)} modules of the wheel under {python}")
    env = {**os.environ, "ARNB_PROFILE": "smoke", "MPLBACKEND": "Agg"}
    shared = ROOT.parent / "shared" / "data"
    if "ARNB_DATA_DIR" not in env and shared.is_dir():
        env["ARNB_DATA_DIR"] = str(shared)
    subprocess.run(
        [py, "-m", "arnb", "run", recipe, "--profile", "smoke", "--out", str(work / "run")],
        check=True,
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    print(f"recipe {recipe} ran under smoke from the installed wheel")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", help="a Python 3.12 that has torch (default: python3.12)")
    parser.add_argument("--recipe", default="markov-chain", help="the recipe run under smoke")
    args = parser.parse_args(argv)
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        wheel = build_wheel(work)
        problems = static_problems(wheel, notebooks)
        for p in problems:
            print(f"FAIL: {p}")
        print(
            f"{wheel.name}: {len(wheel_modules(wheel))} modules; "
            f"{len(notebooks)} notebooks' imports checked, {len(problems)} problems"
        )
        python, why = find_python312(args.python)
        if python is None:
            print(f"SKIPPED the Python 3.12 install and run: {why}")
        else:
            try:
                runtime_check(python, wheel, args.recipe, work)
            except subprocess.CalledProcessError as exc:
                print(f"FAIL: under {python}: {exc}")
                problems.append(str(exc))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
