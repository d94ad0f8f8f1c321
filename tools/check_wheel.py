"""Build the arnb wheel and check that a student's ``pip install`` gets everything the notebooks
use; then, under Python 3.12 (Colab's), install it and run a chapter.

    python tools/check_wheel.py [--python /path/to/python3.12] [--recipe ch02-markov-to-rnn]
    python tools/check_wheel.py --provision DIR [--python /path/to/python3.12]

1. ``pip wheel`` builds the wheel from this checkout (no build isolation: nothing downloaded).
2. Static checks, on any Python: every module of ``arnb/`` is in the wheel, every ``arnb``
   module a notebook imports is in it, and every other module a notebook imports is the
   standard library's, a declared dependency's, or the Jupyter kernel's own (IPython).
3. The Python 3.12 run, two ways. Both import every module of the wheel and every module and
   name the notebooks import (the kernel's own, IPython, excepted: Colab's kernel brings it),
   then run one recipe under the ``smoke`` profile from a folder outside the checkout, so that
   the installed package is the one tested, with the offline data (``$ARNB_DATA_DIR``, else
   ``../shared/data``) and ``ARNB_OFFLINE=1``.

   - ``--provision DIR``: as a Colab student gets it. A fresh virtual environment of a Python
     3.12 (``--python``, else ``python3.12`` on PATH or a pyenv 3.12) in ``DIR/venv``, and a
     plain ``pip install`` of the wheel, not its ``[dev]`` extras, which takes torch and
     torchvision from the package index (for Linux, CUDA builds: about 0.9 GB downloaded and
     a 6 GB environment; pip's cache goes to ``DIR/pip-cache``). ``DIR`` is kept.
   - Otherwise, where a Python 3.12 already imports torch and torchvision (``--python``, else
     one found as above): a virtual environment that sees that interpreter's packages, so
     torch is not downloaded. Without such a Python this part is skipped with a message saying
     so, and the exit status is that of the static checks.

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
import time
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


def find_python312(explicit: str | None, need_torch: bool = True) -> tuple[str | None, str]:
    """A Python 3.12 (one that imports torch and torchvision, with ``need_torch``), or None and
    why not."""
    if explicit:
        candidates = [explicit]
    else:
        candidates = [shutil.which("python3.12"), "/usr/bin/python3.12"]
        candidates += sorted(
            str(p) for p in Path.home().glob(".pyenv/versions/3.12*/bin/python3.12")
        )
    imports = "sys, torch, torchvision" if need_torch else "sys"
    reasons = []
    for python in dict.fromkeys(c for c in candidates if c and Path(c).exists()):
        probe = subprocess.run(
            [python, "-c", f"import {imports}; print(sys.version_info[:2])"],
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


def import_script(modules: list[str], names: list[str]) -> str:
    """Python source that imports ``modules``, resolves each ``module.name`` of ``names`` (a
    submodule or an attribute), and prints a JSON list of what failed."""
    return f"""import importlib, json
failed = []
for m in {modules!r}:
    try:
        importlib.import_module(m)
    except Exception as exc:
        failed.append(f"import {{m}}: {{type(exc).__name__}}: {{exc}}")
for n in {names!r}:
    parent, _, child = n.rpartition(".")
    try:
        if not hasattr(importlib.import_module(parent), child):
            importlib.import_module(n)
    except Exception as exc:
        failed.append(f"from {{parent}} import {{child}}: {{type(exc).__name__}}: {{exc}}")
print(json.dumps(failed))
"""


def what_to_import(wheel: Path, notebooks: list[Path]) -> tuple[list[str], list[str]]:
    """The modules and the ``module.name``s to import: the wheel's and the notebooks', less the
    kernel's own (Colab's kernel brings IPython; a plain venv has none) and ``__main__``s."""
    modules, from_names = notebook_imports(notebooks)
    own = {m for m in modules if m.split(".")[0] not in KERNEL_MODULES}
    names = [n for n in from_names if n.split(".")[0] not in KERNEL_MODULES]
    # importing ``arnb.__main__`` would run the command line
    everything = {m for m in wheel_modules(wheel) | own if not m.endswith(".__main__")}
    return sorted(everything), sorted(names)


def check_imports(py: str, wheel: Path, notebooks: list[Path], cwd: Path) -> int:
    """Import in ``py`` what the wheel and notebooks hold; raises listing what failed; returns
    how many modules and names were checked."""
    modules, names = what_to_import(wheel, notebooks)
    done = subprocess.run(
        [py, "-c", import_script(modules, names)],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    if done.returncode != 0:
        raise RuntimeError(f"the import check crashed: {done.stderr.strip()[-2000:]}")
    failed = json.loads(done.stdout.strip().splitlines()[-1])
    if failed:
        raise RuntimeError("imports failed:\n  " + "\n  ".join(failed))
    return len(modules) + len(names)


def recipe_env(work: Path) -> dict[str, str]:
    """The environment of the smoke run: the offline data where there is some, a scratch
    cache, no display."""
    env = {**os.environ, "ARNB_PROFILE": "smoke", "MPLBACKEND": "Agg"}
    env["ARNB_CACHE_DIR"] = str(work / "cache")
    shared = ROOT.parent / "shared" / "data"
    if "ARNB_DATA_DIR" not in env and shared.is_dir():
        env["ARNB_DATA_DIR"] = str(shared)
    if "ARNB_DATA_DIR" in env:
        env["ARNB_OFFLINE"] = "1"  # the data is all there: a download would be a bug
    return env


def run_recipe(py: str, recipe: str, work: Path, cwd: Path) -> None:
    """``python -m arnb run RECIPE --profile smoke`` under ``py``; raises on failure."""
    done = subprocess.run(
        [py, "-m", "arnb", "run", recipe, "--profile", "smoke", "--out", str(work / "run")],
        cwd=cwd,
        env=recipe_env(work),
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"recipe {recipe} failed: {done.stderr.strip()[-3000:]}")


def versions(py: str) -> str:
    """``Python X.Y.Z, torch A, torchvision B`` as ``py`` has them."""
    code = (
        "import sys, torch, torchvision; "
        "print(f'Python {sys.version.split()[0]}, torch {torch.__version__}, "
        "torchvision {torchvision.__version__}')"
    )
    return subprocess.run(
        [py, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def folder_mb(path: Path) -> int:
    """Size of the files under ``path`` in MB (links not followed)."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            p = Path(folder, name)
            if not p.is_symlink():
                total += p.stat().st_size
    return total // 10**6


def pip_install(py: str, wheel: Path, *options: str) -> None:
    """``pip install wheel`` with ``py``, its dependencies included; raises on failure."""
    # pip's output is kept for a failure: the index's warnings would bury the check's lines
    done = subprocess.run(
        [py, "-m", "pip", "install", "-q", "--progress-bar", "off", *options, str(wheel)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"pip install {wheel.name} failed: {done.stderr.strip()[-3000:]}")


def runtime_check(python: str, wheel: Path, recipe: str, work: Path, notebooks: list[Path]) -> None:
    """Install ``wheel`` into a venv of ``python`` that sees its torch, and run it; raises on
    failure."""
    venv = work / "venv312"
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    # A .pth naming ``python``'s site folders, not --system-site-packages: where ``python`` is
    # itself a venv's, that flag would show its base interpreter's packages, without torch.
    where = "import site, sys; print(*site.getsitepackages(), sep=chr(10))"
    outer = subprocess.run([python, "-c", where], capture_output=True, text=True, check=True)
    inner = subprocess.run([py, "-c", where], capture_output=True, text=True, check=True)
    site_dir = Path(inner.stdout.split()[0])
    (site_dir / "outer_site.pth").write_text(outer.stdout)
    pip_install(py, wheel)
    print(f"{versions(py)} ({python})")
    import_and_run(py, wheel, recipe, work, notebooks)


def import_and_run(py: str, wheel: Path, recipe: str, work: Path, notebooks: list[Path]) -> None:
    """In ``py``'s environment: import what the wheel and notebooks hold, then run ``recipe``
    under smoke, both from ``work/elsewhere`` (not the checkout: the installed package is the
    one imported); raises on failure."""
    cwd = work / "elsewhere"
    cwd.mkdir(exist_ok=True)
    clock = time.monotonic()
    checked = check_imports(py, wheel, notebooks, cwd)
    print(f"imported {checked} modules and names in {time.monotonic() - clock:.0f} s")
    if (work / "run").exists():
        shutil.rmtree(work / "run")
    clock = time.monotonic()
    run_recipe(py, recipe, work, cwd)
    took = time.monotonic() - clock
    print(f"recipe {recipe} ran under smoke from the installed wheel in {took:.0f} s")


def provision_check(
    python: str, wheel: Path, recipe: str, folder: Path, notebooks: list[Path]
) -> None:
    """A fresh venv of ``python`` in ``folder``, a plain ``pip install`` of ``wheel`` into it
    (torch from the index, as on Colab), the imports and the recipe; raises on failure."""
    folder.mkdir(parents=True, exist_ok=True)
    venv = folder / "venv"
    if venv.exists():
        shutil.rmtree(venv)  # fresh each time: only pip's download cache is reused
    clock = time.monotonic()
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    pip_install(py, wheel, "--cache-dir", str(folder / "pip-cache"))
    installed = time.monotonic() - clock
    print(
        f"{versions(py)} ({python}): venv and `pip install {wheel.name}` "
        f"in {installed:.0f} s, {folder_mb(venv)} MB"
    )
    import_and_run(py, wheel, recipe, folder, notebooks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", help="a Python 3.12 (default: python3.12, a pyenv 3.12)")
    parser.add_argument("--recipe", default="ch02-markov-to-rnn", help="the recipe run under smoke")
    parser.add_argument(
        "--provision",
        type=Path,
        metavar="DIR",
        help="install the wheel into a fresh venv in DIR, torch from the index (gigabytes)",
    )
    args = parser.parse_args(argv)
    if args.provision is not None and args.provision.resolve().is_relative_to(ROOT):
        parser.error("--provision DIR must lie outside the checkout")
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    start = time.monotonic()
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
        python, why = find_python312(args.python, need_torch=args.provision is None)
        if python is None and args.provision is not None:
            print(f"FAIL: --provision needs a Python 3.12: {why}")
            problems.append(why)
        elif python is None:
            print(f"SKIPPED the Python 3.12 install and run: {why}")
        else:
            try:
                if args.provision is not None:
                    provision_check(python, wheel, args.recipe, args.provision, notebooks)
                else:
                    runtime_check(python, wheel, args.recipe, work, notebooks)
            except (subprocess.CalledProcessError, RuntimeError) as exc:
                print(f"FAIL: under {python}: {exc}")
                problems.append(str(exc))
    print(f"check_wheel: {'FAILED' if problems else 'passed'} in {time.monotonic() - start:.0f} s")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
