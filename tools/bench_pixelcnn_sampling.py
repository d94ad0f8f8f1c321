"""Time the gated PixelCNN's samplers side by side in one process: the naive loop, the fast
(cropped) sampler and the cached one (kept features; on CUDA replayed as a CUDA graph, and
also without the graph), for several batch sizes, from the same generator seed, asserting that
every sampler draws the naive loop's images.

    python tools/bench_pixelcnn_sampling.py [--profile gpu] [--task binary]
        [--batches 1,4,16,64,256] [--methods naive,fast,cached,cached-eager] [--out DIR]

Writes ``sampling.md`` (a Markdown table: seconds per call and the naive loop's time divided by
each sampler's) and ``sampling.json`` to ``--out`` after every measurement, so a run cut short
keeps what it measured. Exit status 1 if any sampler drew an image different from the naive
loop's. The network is the recipe's, untrained: speed does not depend on the weights. The
samplers compute without TF32 (:func:`arnb.train.exact_float32`): rounded products could flip
draws, and the images would differ.
Every timing includes everything the call does (for the CUDA graph: recording it).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from arnb.chapters.ch05_pixelcnn import SIZES
from arnb.models.pixelcnn import GatedPixelCNN
from arnb.train import Stopwatch
from arnb.validation import validation

# name -> keyword arguments of GatedPixelCNN.sample
METHODS = {
    "naive": dict(method="naive"),
    "fast": dict(method="fast"),
    "cached": dict(method="cached"),  # CUDA graph on CUDA, eager elsewhere
    "cached-eager": dict(method="cached", cuda_graph=False),
}


def sample(model, n: int, seed: int, label, kwargs: dict) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    kw = dict(kwargs)
    method = kw.pop("method")
    if method == "cached":
        return model.sample_cached(n, generator=g, label=label, **kw)
    return model.sample(n, generator=g, label=label, method=method)


def table(rows: list[dict], methods: list[str], key: str = "seconds") -> str:
    """Markdown: one line per batch size, seconds per call, then naive / method."""
    others = [m for m in methods if m != "naive"]
    head = ["batch"] + [f"{m} (s)" for m in methods] + [f"naive / {m}" for m in others]
    head += ["identical images"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for r in rows:
        t = r[key]
        cells = [str(r["n"])] + [f"{t[m]:.3f}" if m in t else "-" for m in methods]
        for m in others:
            ok = "naive" in t and m in t
            cells.append(f"{t['naive'] / t[m]:.1f}x" if ok else "-")
        same = r["identical_images"]
        cells.append(", ".join(f"{m} {k}/{r['n']}" for m, k in same.items()) or "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--profile", default=None, help="network sizes (default: gpu on CUDA, else cpu)"
    )
    ap.add_argument("--task", default="binary", choices=["binary", "mnist8", "color"])
    ap.add_argument("--batches", default="1,4,16,64,256")
    ap.add_argument("--methods", default=None, help="default: naive,fast,cached[,cached-eager]")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: leave)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=None, help="images size x size (smoke runs)")
    ap.add_argument("--out", type=Path, default=Path("runs/bench-pixelcnn-sampling"))
    a = ap.parse_args(argv)

    cuda = torch.cuda.is_available()
    dev = torch.device("cuda" if cuda else "cpu")
    profile = a.profile or ("gpu" if cuda else "cpu")
    methods = a.methods or ("naive,fast,cached,cached-eager" if cuda else "naive,fast,cached")
    methods = methods.split(",")
    if unknown := set(methods) - set(METHODS):
        ap.error(f"unknown methods {sorted(unknown)}; choose from {list(METHODS)}")
    if a.threads:
        torch.set_num_threads(a.threads)
    cfg = getattr(SIZES[profile], a.task).model
    if a.size:
        cfg = replace(cfg, height=a.size, width=a.size)
    torch.manual_seed(a.seed)
    model = GatedPixelCNN(cfg).to(dev, getattr(torch, a.dtype)).eval()
    a.out.mkdir(parents=True, exist_ok=True)
    info = {
        "device": torch.cuda.get_device_name() if cuda else platform.processor() or "cpu",
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "threads": torch.get_num_threads(),
        "profile": profile,
        "task": a.task,
        "config": {k: getattr(cfg, k) for k in ("channels", "height", "width", "num_classes")}
        | {"hidden": cfg.hidden, "layers": cfg.layers, "dilations": list(cfg.dilations)},
        "parameters": model.num_parameters(),
        "dtype": a.dtype,
        "tf32": False,  # the samplers turn it off
        "methods": methods,
        "command": "python tools/bench_pixelcnn_sampling.py " + " ".join(sys.argv[1:]),
    }
    print(f"{info['device']}, torch {info['torch']}, {a.task} network of the {profile} profile")
    print(f"({model.num_parameters():,} parameters), {a.dtype}, {info['threads']} CPU threads")

    def label_for(n: int):
        return torch.arange(n, device=dev) % cfg.num_labels if cfg.num_labels else None

    rows: list[dict] = []
    all_same = True
    with validation(False):  # as in the recipes' loops: no value checks inside the timing
        # warm-up (allocator, library initialisation, kernels loaded) with one image each
        failed: dict[str, str] = {}  # a method that fails (say, a graph capture) is dropped
        for m in methods:
            try:
                sample(model, 1, a.seed, label_for(1), METHODS[m])
            except Exception as e:
                failed[m] = f"{type(e).__name__}: {e}"
                print(f"{m} FAILED: {failed[m]}", flush=True)
        info["failed"] = failed
        methods = [m for m in methods if m not in failed]
        for n in [int(b) for b in a.batches.split(",")]:
            row = {"n": n, "seconds": {}, "cpu_seconds": {}, "identical_images": {}}
            rows.append(row)
            got = {}
            # cheapest first, so that a run cut short by a timeout still has them
            for m in sorted(methods, key=lambda m: m == "naive"):
                cpu0 = time.process_time()
                with Stopwatch(dev) as watch:
                    got[m] = sample(model, n, a.seed, label_for(n), METHODS[m])
                row["seconds"][m] = watch.seconds
                # on a shared CPU the process's own CPU time is the steadier measure
                row["cpu_seconds"][m] = time.process_time() - cpu0
                if "naive" in got:
                    for other, x in got.items():
                        same = int((x == got["naive"]).flatten(1).all(1).sum())
                        if other != "naive":
                            row["identical_images"][other] = same
                            all_same &= same == n
                print(f"batch {n:4d}  {m:13s} {watch.seconds:9.3f} s", flush=True)
                write(a.out, info, rows, methods, all_same)
    print()
    print(table(rows, methods))
    if failed:
        print(f"FAILED methods: {sorted(failed)}")
    if not all_same:
        print("NOT IDENTICAL: some sampler drew images different from the naive loop's")
        return 1
    return 1 if failed else 0


def write(out: Path, info: dict, rows: list[dict], methods: list[str], all_same: bool) -> None:
    result = {**info, "rows": rows, "all_identical": all_same, "written": time.time()}
    (out / "sampling.json").write_text(json.dumps(result, indent=1))
    md = [
        f"Sampling {info['task']} images, {info['device']}, torch {info['torch']}, "
        f"{info['parameters']:,} parameters, {info['dtype']}, threads {info['threads']}.",
        "",
        "Wall-clock seconds per call:",
        "",
        table(rows, methods),
        "",
        "Process CPU seconds per call (all threads; the steadier measure on a shared CPU):",
        "",
        table(rows, methods, "cpu_seconds"),
        "",
        f"Command: `{info['command']}`",
    ]
    (out / "sampling.md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
