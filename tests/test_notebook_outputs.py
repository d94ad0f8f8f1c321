"""The committed notebooks carry the outputs their prose reads.

The book is built from the notebooks as committed (``execute_notebooks: off``), so a
``{glue}`` role whose key no executed cell glued only fails at ``jupyter-book build``,
after the whole test suite. Checking the stored outputs here fails in a second instead.
"""

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))

# {glue}`key`, {glue:text}`key:.3f`, and the block forms ```{glue:figure} key / :::{glue} key
ROLE = re.compile(r"\{glue(?::\w+)?\}`([^`:]+)(?::[^`]*)?`")
BLOCK = re.compile(r"^(?:```|:::)\{glue(?::\w+)?\}\s+(\S+)", re.MULTILINE)


def glue_references(nb):
    """Keys the markdown cells read."""
    refs = set()
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            refs |= set(ROLE.findall(cell.source)) | set(BLOCK.findall(cell.source))
    return refs


def glued_keys(nb):
    """Keys the stored outputs of the code cells hold (myst-nb's glue output metadata)."""
    keys = set()
    for cell in nb.cells:
        if cell.cell_type == "code":
            for out in cell.get("outputs", []):
                name = out.get("metadata", {}).get("scrapbook", {}).get("name")
                if name:
                    keys.add(name)
    return keys


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_glue_key_the_prose_reads_is_in_the_stored_outputs(path):
    nb = nbformat.read(path, as_version=4)
    missing = glue_references(nb) - glued_keys(nb)
    assert not missing, (
        f"{path.name}: the prose reads glue keys no stored output holds: {sorted(missing)}; "
        f"re-execute it (python tools/nb.py run {path.relative_to(path.parent.parent)})"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_code_cell_is_stored_executed(path):
    nb = nbformat.read(path, as_version=4)
    counts = [c.execution_count for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    assert counts and None not in counts, f"{path.name}: code cells stored unexecuted"


def test_the_check_sees_a_missing_key():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("MSE {glue:text}`mse:.2f`, NLL {glue}`nll`.\n"),
        nbformat.v4.new_markdown_cell("```{glue:figure} fig\n```\n"),
    ]
    code = nbformat.v4.new_code_cell("glue('nll', 1.0)")
    code.outputs = [
        nbformat.v4.new_output(
            "display_data", data={"text/plain": "1.0"}, metadata={"scrapbook": {"name": "nll"}}
        )
    ]
    nb.cells.append(code)
    assert glue_references(nb) == {"mse", "nll", "fig"}
    assert glue_references(nb) - glued_keys(nb) == {"mse", "fig"}
