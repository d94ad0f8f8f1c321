"""Turn a benchmark's JSON (``sampling.json`` of tools/bench_pixelcnn_sampling.py, ``step.json``
of tools/bench_pixelcnn_step.py) into a recipe-style metrics file for tools/results_tables.py.

    python tools/bench_metrics.py runs/gpu-session/sampling/sampling.json \\
        book/results/metrics/pixelcnn-sampling-bench-gpu.json \\
        --commit d231a28 --dirty --date "2026-12-04 12:08" --env runs/gpu-session/env.txt

The benchmarks run on the GPU machine from a copy of the working tree whose git metadata may be
missing or behind, so the commit, whether the tree had changes, and the date are given here;
the device, torch and the command come from the benchmark's own JSON. Each row gains its
ratios: the naive loop's seconds over each sampler's (``speedup.<method>``), or a setting's speed
against the first setting's (``step_speedup``: milliseconds per step; ``image_speedup``:
microseconds per image).
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from arnb.data.files import write_atomic


def sampling_rows(bench: dict) -> list[dict]:
    rows = []
    for r in bench["rows"]:
        t = r["seconds"]
        speed = {m: t["naive"] / s for m, s in t.items() if m != "naive" and "naive" in t}
        rows.append({**r, "speedup": speed})
    return rows


def step_rows(bench: dict) -> list[dict]:
    first = bench["rows"][0]
    return [
        {
            **r,
            "step_speedup": first["ms_per_step"] / r["ms_per_step"],
            "image_speedup": first["us_per_image"] / r["us_per_image"],
        }
        for r in bench["rows"]
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bench", type=Path, help="sampling.json or step.json")
    ap.add_argument("out", type=Path, help="the metrics file to write")
    ap.add_argument("--commit", required=True, help="the commit the run's tree was made from")
    ap.add_argument("--dirty", action="store_true", help="that tree had uncommitted changes")
    ap.add_argument("--date", required=True, help="UTC date of the run, 'YYYY-MM-DD HH:MM'")
    ap.add_argument("--env", type=Path, help="env.txt of the GPU session (nvidia-smi line)")
    a = ap.parse_args()

    bench = json.loads(a.bench.read_text())
    if "ms_per_step" in bench["rows"][0]:
        recipe, rows = "pixelcnn-step-bench", step_rows(bench)
    else:
        task = bench.get("task", "binary")
        recipe = "pixelcnn-sampling-bench" + ("" if task == "binary" else f"-{task}")
        rows = sampling_rows(bench)
        if not bench.get("all_identical", False):
            raise SystemExit(f"{a.bench}: some sampler drew other images than the naive loop")
    keep = {k: v for k, v in bench.items() if k not in ("rows", "command", "written")}
    commit = subprocess.run(
        ["git", "rev-parse", a.commit], capture_output=True, text=True, check=True
    ).stdout.strip()
    result = {
        "recipe": recipe,
        "metrics": {**keep, "rows": rows},
        "command": bench["command"],
        "profile": bench.get("profile", "gpu"),
        "device": "cuda",
        "device_name": bench["device"],
        "torch": bench["torch"],
        "git_commit": commit,
        "git_dirty": a.dirty,
        "date_utc": a.date,
        "gpu": a.env.read_text().splitlines()[0] if a.env else None,
    }
    write_atomic(a.out, (json.dumps(result, indent=2) + "\n").encode())
    print(f"wrote {a.out}: {recipe}, {len(rows)} rows")


if __name__ == "__main__":
    main()
