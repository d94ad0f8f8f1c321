"""Write the instructors' table of exercises from the executed notebooks.

    python tools/exercise_table.py            # rewrite book/instructors/exercises.md
    python tools/exercise_table.py --check    # exit 1 if the committed table is out of date

One row per exercise: chapter, title, the checkers it calls, the length of the solution in lines
and how long the solution cell took in the committed run (the notebooks are executed under the
profile their record cell names), so nothing in the table is typed by hand.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import datetime
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arnb.student import BEGIN, END, count_checks  # noqa: E402

TABLE = ROOT / "book" / "instructors" / "exercises.md"


def seconds(cell) -> float | None:
    t = cell.metadata.get("execution", {})
    try:
        start = datetime.fromisoformat(t["iopub.execute_input"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(t["shell.execute_reply"].replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return None
    return (end - start).total_seconds()


def solution_lines(source: str) -> int:
    inside, n = False, 0
    for line in source.splitlines():
        s = line.strip()
        if s.startswith(BEGIN):
            inside = True
        elif s.startswith(END):
            inside = False
        elif inside and s and not s.startswith("#"):
            n += 1
    return n


def exercises(path: Path) -> list[dict]:
    """The exercises of one notebook: heading, then the first code cell that calls a checker."""
    nb = nbformat.read(path, as_version=4)
    rows, pending = [], []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            pending += re.findall(r"^#+ (Exercise \d+: .+)$", cell.source, re.M)
        elif pending and count_checks(cell.source):
            checks = sorted(set(re.findall(r"\b(check_\w+)\(", cell.source)))
            t = seconds(cell)
            rows.append(
                {
                    "chapter": path.stem,
                    "title": pending.pop(0),
                    "checkers": ", ".join(f"`{c}`" for c in checks),
                    "lines": solution_lines(cell.source),
                    "seconds": t,
                }
            )
    return rows


def table(notebooks: list[Path]) -> str:
    lines = [
        "| chapter | exercise | checker | solution lines | solution + check, s |",
        "|---|---|---|---|---|",
    ]
    for path in notebooks:
        for r in exercises(path):
            t = "not run" if r["seconds"] is None else f"{r['seconds']:.1f}"
            lines.append(
                f"| {r['chapter']} | {r['title']} | {r['checkers']} | {r['lines']} | {t} |"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the table is out of date")
    args = parser.parse_args()
    text = table(sorted((ROOT / "notebooks").glob("0[1-9]_*.ipynb")))
    if args.check:
        if not TABLE.exists() or TABLE.read_text() != text:
            print(f"{TABLE} is out of date: run python tools/exercise_table.py")
            return 1
        return 0
    TABLE.parent.mkdir(parents=True, exist_ok=True)
    TABLE.write_text(text)
    print(f"wrote {TABLE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
