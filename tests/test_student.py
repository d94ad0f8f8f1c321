"""The student notebooks: solutions stubbed, every cell still runs, every checker says so.

``python -m arnb student OUT`` writes them; the last test here executes each one under
``smoke`` (as an instructor's CI would) and reads every exercise cell's output.
"""

import os
import re
from pathlib import Path

import nbformat
import pytest

from arnb.exercises import STRICT_ENV, ch01
from arnb.student import (
    NOTEBOOKS,
    SolutionMarkerError,
    count_checks,
    has_solution,
    strip_solutions,
    student_notebook,
    write_student_notebooks,
)

CHAPTERS = sorted(p for p in NOTEBOOKS.glob("0[1-9]_*.ipynb"))


def test_region_becomes_stub_with_hint_and_indent():
    src = (
        "def f(x):\n"
        "    ### HINT: square it\n"
        "    ### BEGIN SOLUTION\n"
        "    y = x * x\n"
        "    return y\n"
        "    ### END SOLUTION\n"
        "\n"
        "ex.check_f(f)\n"
    )
    out = strip_solutions(src)
    assert "x * x" not in out and "return y" not in out
    assert "    raise NotImplementedError('square it')" in out
    assert out.endswith("ex.check_f(f)\n")
    compile(out, "student", "exec")  # still valid Python


def test_markdown_region_and_unbalanced_markers():
    md = "Why?\n\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION\n"
    assert strip_solutions(md, markdown=True) == "Why?\n\nYOUR ANSWER HERE\n"
    with pytest.raises(SolutionMarkerError, match="without"):
        strip_solutions("### BEGIN SOLUTION\nx = 1\n")
    with pytest.raises(SolutionMarkerError, match="without"):
        strip_solutions("x = 1\n### END SOLUTION\n")
    with pytest.raises(SolutionMarkerError, match="inside"):
        strip_solutions("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n")


def test_only_solution_cells_lose_their_outputs():
    nb = nbformat.v4.new_notebook()
    kept = nbformat.v4.new_code_cell("print(1)")
    kept.outputs = [nbformat.v4.new_output("stream", text="1\n")]
    sol = nbformat.v4.new_code_cell(
        "def f():\n    ### BEGIN SOLUTION\n    return 2\n    ### END SOLUTION\n"
    )
    sol.outputs = [nbformat.v4.new_output("stream", text="f: correct\n")]
    sol.metadata["tags"] = ["hide-input"]
    nb.cells = [kept, sol]
    student = student_notebook(nb)
    assert student.cells[0].outputs == kept.outputs
    assert student.cells[1].outputs == [] and "return 2" not in student.cells[1].source
    assert "hide-input" not in student.cells[1].metadata["tags"]
    assert sol.outputs and "return 2" in sol.source  # the original is untouched


def to_bits_stub(nll_nats, dims):
    # YOUR CODE HERE
    raise NotImplementedError("divide by dims and by ln 2")


def test_stub_reports_not_attempted_in_one_line(capsys, monkeypatch):
    monkeypatch.delenv(STRICT_ENV, raising=False)
    assert ch01.check_bits_per_dim(to_bits_stub) is False
    out = capsys.readouterr().out.strip().splitlines()
    assert out == ["bits_per_dim: not attempted yet (write your answer in place of the `raise`)"]


def test_strict_mode_raises_on_a_failed_check(monkeypatch, capsys):
    monkeypatch.setenv(STRICT_ENV, "strict")
    with pytest.raises(AssertionError, match="bits_per_dim"):
        ch01.check_bits_per_dim(lambda nll, d: nll / d)
    with pytest.raises(AssertionError):
        ch01.check_bits_per_dim(to_bits_stub)
    assert ch01.check_bits_per_dim(lambda nll, d: nll / (d * 0.6931471805599453))


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_exercise_is_marked_and_counted(path):
    nb = nbformat.read(path, as_version=4)
    exercises = sum(
        len(re.findall(r"^#+ Exercise", c.source, re.M))
        for c in nb.cells
        if c.cell_type == "markdown"
    )
    assert exercises >= 4, f"{path.name}: {exercises} exercises, want at least 4"
    for cell in nb.cells:
        if cell.cell_type == "code" and count_checks(cell.source):
            assert has_solution(cell.source), f"{path.name}: checked cell without a solution region"
            assert "hide-input" in cell.metadata.get("tags", []), (
                f"{path.name}: an exercise cell must be tagged hide-input (the book folds it)"
            )


def test_student_notebooks_run_and_say_not_attempted(tmp_path):
    """Every cell of every student notebook runs under smoke; every check says 'not attempted'."""
    from nbclient import NotebookClient

    os.environ.pop(STRICT_ENV, None)  # the kernel inherits this process's environment
    written = write_student_notebooks(tmp_path, CHAPTERS)
    for path in written:
        nb = nbformat.read(path, as_version=4)
        assert not any("### BEGIN SOLUTION" in c.source for c in nb.cells)
        NotebookClient(
            nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        ).execute()
        for cell in nb.cells:
            if cell.cell_type != "code" or not count_checks(cell.source):
                continue
            text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
            assert text.count("not attempted yet") == count_checks(cell.source), (
                f"{path.name}: {cell.source[:80]!r} printed {text!r}"
            )
            assert ": correct" not in text


def test_cli_writes_student_notebooks(tmp_path):
    from arnb.cli import main

    assert main(["student", str(tmp_path), str(CHAPTERS[0])]) == 0
    assert (tmp_path / CHAPTERS[0].name).is_file()
    assert not list(Path(tmp_path).glob("*.part"))


def test_without_the_repository_says_where_the_notebooks_are(tmp_path, monkeypatch):
    """Installed from a wheel, the package has no notebooks beside it: say so, not just fail."""
    monkeypatch.setattr("arnb.student.NOTEBOOKS", tmp_path / "notebooks")
    with pytest.raises(FileNotFoundError, match="clone of the book's repository"):
        write_student_notebooks(tmp_path / "out")
