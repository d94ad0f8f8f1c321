"""Author and execute the book's notebooks.

    python tools/nb.py new chapter.py notebooks/NN_name.ipynb   # py:percent script -> notebook
    python tools/nb.py run notebooks/NN_name.ipynb --profile cpu # execute in place, top to bottom
    python tools/nb.py run notebooks/NN_name.ipynb --profile gpu --out DIR  # executed copy in DIR

``new`` reads a script whose cells start with ``# %%`` (code) or ``# %% [markdown]`` (markdown,
every line prefixed with ``# ``) and writes a notebook with kernelspec ``python3``. ``run``
executes a notebook in place under a profile, so committed outputs always come from a real run;
with ``--out`` the executed notebook goes to that folder instead (it still runs in the
notebook's own folder), which the GPU session uses so that a re-sent working tree cannot
overwrite a run's result.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from pathlib import Path

import nbformat

from arnb.data.files import write_atomic

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def script_to_notebook(text: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = KERNELSPEC
    nb.metadata["language_info"] = {"name": "python"}
    chunks = re.split(r"^# %%(.*)$", text, flags=re.M)
    for header, body in zip(chunks[1::2], chunks[2::2]):
        body = body.strip("\n")
        if "[markdown]" in header:
            lines = [re.sub(r"^# ?", "", line) for line in body.splitlines()]
            nb.cells.append(nbformat.v4.new_markdown_cell("\n".join(lines).strip("\n")))
        elif body.strip():
            nb.cells.append(nbformat.v4.new_code_cell(body))
    return nb


def run(path: Path, profile: str, timeout: int, out: Path | None = None) -> None:
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    nb.metadata["kernelspec"] = KERNELSPEC
    os.environ["ARNB_PROFILE"] = profile
    # A non-interactive backend (pytest's conftest sets Agg) would leave the figures out.
    os.environ.pop("MPLBACKEND", None)
    t0 = time.time()
    n_code = sum(cell.cell_type == "code" for cell in nb.cells)
    done = 0

    def progress(cell, **_):  # one line per code cell: a long run shows where it is
        nonlocal done
        if cell.cell_type == "code":
            done += 1
            print(f"{path.name}: cell {done}/{n_code} done at {time.time() - t0:.0f} s", flush=True)

    NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        on_cell_executed=progress,
    ).execute()
    dest = path if out is None else out / path.name
    write_atomic(dest, (nbformat.writes(nb) + "\n").encode())  # as nbformat.write writes it
    print(f"executed {path} under profile {profile} in {time.time() - t0:.0f} s -> {dest}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    new = sub.add_parser("new")
    new.add_argument("script", type=Path)
    new.add_argument("notebook", type=Path)
    ex = sub.add_parser("run")
    ex.add_argument("notebooks", type=Path, nargs="+")
    ex.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "gpu"])
    ex.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    ex.add_argument("--out", type=Path, help="write the executed notebooks here, not in place")
    args = parser.parse_args()
    if args.command == "new":
        nbformat.write(script_to_notebook(args.script.read_text()), args.notebook)
        print(f"wrote {args.notebook}")
    else:
        for path in args.notebooks:
            run(path, args.profile, args.timeout, args.out)


if __name__ == "__main__":
    main()
