"""Command line: ``python -m arnb list``, ``python -m arnb run RECIPE [--profile P] [--out DIR]``
and ``python -m arnb student OUT_DIR`` (the student notebooks, solutions stubbed).

Data-parallel on N processes: ``torchrun --standalone --nproc_per_node=N -m arnb run RECIPE``
(every rank trains; rank 0 alone writes ``metrics.json`` and the figures).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from . import distributed
from .chapters import load_all
from .config import PROFILES, setup


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="arnb", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the recipes")
    run = sub.add_parser("run", help="run a recipe and write metrics.json and figures")
    run.add_argument("recipe")
    run.add_argument(
        "--profile",
        choices=PROFILES,
        default=None,
        help="run profile (default: $ARNB_PROFILE, else gpu if CUDA else cpu)",
    )
    run.add_argument(
        "--out", type=Path, default=None, help="output folder (default runs/RECIPE-PROFILE)"
    )
    run.add_argument("--seed", type=int, default=0)
    student = sub.add_parser(
        "student", help="write the student notebooks (solutions replaced by stubs)"
    )
    student.add_argument("out", type=Path, help="folder for the student notebooks")
    student.add_argument(
        "notebooks", type=Path, nargs="*", help="notebooks (default: all of the book's)"
    )
    args = parser.parse_args(argv)

    if args.command == "student":
        from .student import write_student_notebooks

        for path in write_student_notebooks(args.out, args.notebooks or None):
            print(path)
        return 0

    recipes = load_all()
    if args.command == "list":
        for r in sorted(recipes.values(), key=lambda r: r.name):
            print(f"{r.name:28s} {r.description}")
        return 0
    if args.recipe not in recipes:
        parser.error(f"unknown recipe {args.recipe!r}; `python -m arnb list` shows them")
    me = distributed.current()
    s = setup(seed=args.seed, profile=args.profile, verbose=me is None or me.is_main)
    out = args.out or Path("runs") / f"{args.recipe}-{s.profile}"
    t0 = time.time()
    try:
        if me is not None and not me.is_main:  # the other ranks' figures are rank 0's again
            with tempfile.TemporaryDirectory() as scratch:
                recipes[args.recipe].fn(s, Path(scratch))
            return 0
        out.mkdir(parents=True, exist_ok=True)
        metrics = recipes[args.recipe].fn(s, out)
    finally:
        distributed.leave()
    result = {
        "recipe": args.recipe,
        "metrics": metrics,
        "seconds": round(time.time() - t0, 1),
        "command": "python -m arnb " + " ".join(sys.argv[1:] if argv is None else argv),
        **s.record(),
        "world_size": 1 if me is None else me.world_size,
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
