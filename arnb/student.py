"""The student version of the book's notebooks: ``python -m arnb student OUT_DIR``.

Solutions are marked with nbgrader's convention, so the notebooks also work in nbgrader or
otter-grader set-ups::

    def made_mask(in_degrees, out_degrees, output_layer):
        ### HINT: compare every output degree with every input degree (broadcasting)
        ### BEGIN SOLUTION
        ...
        ### END SOLUTION

Each region becomes ``raise NotImplementedError("<hint>")`` at the region's indentation (an
optional ``### HINT:`` line just above the region gives the message and stays in the cell).
The outputs of every cell holding a region are cleared, since they came from the solution;
every other cell, its outputs included, is kept. A Markdown cell's region becomes
``YOUR ANSWER HERE``.
"""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path

from .data.files import write_atomic

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
HINT = "### HINT:"
NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


class SolutionMarkerError(ValueError):
    """A ``### BEGIN SOLUTION`` without its ``### END SOLUTION`` (or the reverse)."""


def strip_solutions(source: str, markdown: bool = False, where: str = "cell") -> str:
    """``source`` with every solution region replaced by the stub; raises on unbalanced markers."""
    out: list[str] = []
    inside = False
    hint = "write your answer here"
    for number, line in enumerate(source.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith(BEGIN):
            if inside:
                raise SolutionMarkerError(f"{where}, line {number}: {BEGIN} inside a region")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            if markdown:
                out.append(f"{indent}YOUR ANSWER HERE")
            else:
                out.append(f"{indent}# YOUR CODE HERE")
                out.append(f"{indent}raise NotImplementedError({hint!r})")
            continue
        if stripped.startswith(END):
            if not inside:
                raise SolutionMarkerError(f"{where}, line {number}: {END} without {BEGIN}")
            inside = False
            hint = "write your answer here"
            continue
        if inside:
            continue
        if stripped.startswith(HINT):
            hint = stripped[len(HINT) :].strip() or hint
        out.append(line)
    if inside:
        raise SolutionMarkerError(f"{where}: {BEGIN} without {END}")
    return "\n".join(out) + ("\n" if source.endswith("\n") else "")


def has_solution(source: str) -> bool:
    return any(line.strip().startswith(BEGIN) for line in source.splitlines())


def student_notebook(nb, name: str = "notebook"):
    """A copy of the nbformat notebook ``nb`` with solutions stubbed and their outputs cleared."""
    nb = copy.deepcopy(nb)
    for index, cell in enumerate(nb.cells):
        if not has_solution(cell.source):
            continue
        where = f"{name}, cell {index}"
        cell.source = strip_solutions(cell.source, cell.cell_type == "markdown", where)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            tags = [t for t in cell.metadata.get("tags", []) if t != "hide-input"]
            cell.metadata["tags"] = tags  # the student sees the stub, not a folded cell
    nb.metadata["arnb"] = {"version": "student"}
    return nb


def write_student_notebooks(out_dir: Path, notebooks: list[Path] | None = None) -> list[Path]:
    """Write the student version of ``notebooks`` (default: the book's) into ``out_dir``.

    Files next to the notebooks (the Colab badge) are copied too. Each file is written to a
    temporary name first and renamed, so an interrupted run leaves no half-written notebook.
    """
    import nbformat

    notebooks = notebooks or sorted(NOTEBOOKS.glob("*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(
            f"no notebooks found in {NOTEBOOKS}: the notebooks are not part of the installed "
            "package; run this in a clone of the book's repository, or name the notebooks: "
            "python -m arnb student OUT_DIR path/to/*.ipynb"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        student = student_notebook(nb, path.name)
        target = out_dir / path.name
        write_atomic(target, (nbformat.writes(student) + "\n").encode())  # as nbformat.write
        written.append(target)
    for extra in {p.parent for p in notebooks}:
        for asset in extra.iterdir():
            if asset.is_file() and not asset.name.endswith(".ipynb"):
                shutil.copy2(asset, out_dir / asset.name)
    return written


def count_checks(source: str) -> int:
    """How many checker calls (``check_NAME(``) a cell makes."""
    return len(re.findall(r"\bcheck_\w+\(", source))
