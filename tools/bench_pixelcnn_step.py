"""Time one training step of the gpu-profile 8-bit PixelCNN under several settings, side by side
in one process, and report milliseconds per step, microseconds per image and the ratios to the
first setting (the recipes' step as they train today).

    python tools/bench_pixelcnn_step.py [--batch 256] [--steps 50] [--out DIR] [--only a,b]
    python tools/bench_pixelcnn_step.py --smoke      # tiny network on the CPU: the code paths

``--smoke`` compiles with the ``aot_eager`` backend (``--compile-backend``): it traces the step
as inductor would (dynamo, AOTAutograd) but skips code generation, which takes minutes on a
busy CPU. Its compiled timings say nothing about speed; on the GPU the default is inductor.
On the CPU there is no autocast (the "bf16" settings run in float32) and no CUDA graph.

A step is the training loop's: bf16 autocast on CUDA, backward, gradient clipping at 1.0, AdamW,
and the weight average's update. Settings (keys for ``--only``):

- ``eager``: as the recipes train (cuDNN heuristics) -- the reference;
- ``bench``: the same with ``cudnn.benchmark`` (cuDNN times its algorithms once per shape);
- ``channels-last``: the same with channels-last tensors;
- ``fp32``: float32 (TF32 matmuls) with ``cudnn.benchmark``, no autocast;
- ``fused-adamw``: ``cudnn.benchmark`` and AdamW's fused CUDA kernel (CUDA only);
- ``compile``: the loss (forward and backward) through ``torch.compile``; inductor fuses the
  gates ``tanh(a) * sigmoid(b)`` and the bias/residual additions around them;
- ``compile-graphs``: ``torch.compile(mode="reduce-overhead")``: the same, replayed as CUDA
  graphs (no effect on the CPU);
- ``batch2x``, ``batch4x``, ``compile-batch4x``: larger batches, eager and compiled. Compare
  them by microseconds per image; training with them needs a matched learning rate (e.g.
  scaled by the square root of the batch ratio) and fewer steps, which only a training run
  can validate.

Each setting reports the seconds of its first step too: for compiled settings that is the
compile time, which a 10-minute training budget pays once. Random images: speed does not
depend on data. Writes ``step.md`` and ``step.json`` to ``--out`` after every setting.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from arnb.chapters.ch05_pixelcnn import SIZES
from arnb.models.pixelcnn import GatedPixelCNN
from arnb.train import Stopwatch, WeightAverage, autocast
from arnb.validation import validation

# key -> (description, options)
SETTINGS = {
    "eager": ("bf16 autocast, heuristics (as trained)", {}),
    "bench": ("bf16, cudnn.benchmark", {"bench": True}),
    "channels-last": ("bf16, cudnn.benchmark, channels-last", {"bench": True, "cl": True}),
    "fp32": ("fp32/TF32, cudnn.benchmark", {"bench": True, "amp": False}),
    "fused-adamw": ("bf16, cudnn.benchmark, fused AdamW", {"bench": True, "fused": True}),
    "compile": ("bf16, torch.compile", {"bench": True, "compile": "default"}),
    "compile-graphs": (
        "bf16, torch.compile reduce-overhead (CUDA graphs)",
        {"bench": True, "compile": "reduce-overhead"},
    ),
    "batch2x": ("bf16, cudnn.benchmark, batch x2", {"bench": True, "scale": 2}),
    "batch4x": ("bf16, cudnn.benchmark, batch x4", {"bench": True, "scale": 4}),
    "compile-batch4x": (
        "bf16, torch.compile, batch x4",
        {"bench": True, "compile": "default", "scale": 4},
    ),
}


def time_steps(
    cfg, batch: int, steps: int, warmup: int, dev: torch.device, opts: dict, backend: str
) -> dict:
    """Milliseconds per step of one setting, after ``warmup`` steps (the first one timed too)."""
    torch.backends.cudnn.benchmark = opts.get("bench", False)
    torch.manual_seed(0)
    batch *= opts.get("scale", 1)
    model = GatedPixelCNN(cfg).to(dev)
    x = torch.randint(0, cfg.num_classes, (batch, cfg.channels, cfg.height, cfg.width), device=dev)
    if opts.get("cl"):
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    fused = opts.get("fused", False)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused or None)
    average = WeightAverage(model, 0.999)
    amp = opts.get("amp", True)

    def loss_of(x):
        return model.nll(x)

    if opts.get("compile"):
        if backend == "inductor":
            loss_of = torch.compile(loss_of, mode=opts["compile"])
        else:  # modes are inductor's options
            loss_of = torch.compile(loss_of, backend=backend)

    def step():
        opt.zero_grad(set_to_none=True)
        if amp:
            with autocast(dev):
                loss = loss_of(x)
        else:
            loss = loss_of(x)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        average.update(model)

    with validation(False):  # as train() runs after its first batch: no value checks
        with Stopwatch(dev) as first:
            step()
        for _ in range(warmup - 1):  # algorithm search, allocator, graph recording
            step()
        with Stopwatch(dev) as watch:
            for _ in range(steps):
                step()
    ms = 1000 * watch.seconds / steps
    return {
        "batch": batch,
        "ms_per_step": ms,
        "us_per_image": 1000 * ms / batch,
        "first_step_seconds": first.seconds,
    }


def table(rows: list[dict]) -> str:
    head = (
        "| setting | batch | ms/step | us/image | step time vs first | images/s vs first | "
        "first step (s) |"
    )
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|"]
    base = next((r for r in rows if "ms_per_step" in r), None)
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['setting']} | - | failed: {r['error'][:80]} | | | | |")
            continue
        lines.append(
            f"| {r['setting']} | {r['batch']} | {r['ms_per_step']:.2f} | {r['us_per_image']:.1f}"
            f" | {base['ms_per_step'] / r['ms_per_step']:.2f}x"
            f" | {base['us_per_image'] / r['us_per_image']:.2f}x"
            f" | {r['first_step_seconds']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--only", default=None, help=f"comma-separated keys of {list(SETTINGS)}")
    ap.add_argument("--smoke", action="store_true", help="tiny network, batch 4, 2 timed steps")
    ap.add_argument("--out", type=Path, default=Path("runs/bench-pixelcnn-step"))
    ap.add_argument("--compile-backend", default=None, help="inductor (default), aot_eager, ...")
    a = ap.parse_args(argv)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    cuda = torch.cuda.is_available()
    dev = torch.device("cuda" if cuda else "cpu")
    cfg = SIZES["gpu"].mnist8.model
    if a.smoke:
        cfg = replace(SIZES["smoke"].mnist8.model, height=8, width=8)
        a.batch, a.steps, a.warmup = 4, 2, 2
    backend = a.compile_backend or ("aot_eager" if a.smoke else "inductor")
    keys = a.only.split(",") if a.only else list(SETTINGS)
    if unknown := set(keys) - set(SETTINGS):
        ap.error(f"unknown settings {sorted(unknown)}; choose from {list(SETTINGS)}")
    if not cuda:
        keys = [k for k in keys if not SETTINGS[k][1].get("fused")]  # fused AdamW: CUDA only
    name = torch.cuda.get_device_name() if cuda else "cpu"
    info = {
        "device": name,
        "torch": torch.__version__,
        "batch": a.batch,
        "steps": a.steps,
        "warmup": a.warmup,
        "compile_backend": backend,
        "config": {"hidden": cfg.hidden, "layers": cfg.layers, "size": cfg.height},
        "command": "python tools/bench_pixelcnn_step.py " + " ".join(sys.argv[1:]),
    }
    print(f"{name}, torch {torch.__version__}, batch {a.batch}, {a.steps} timed steps")
    a.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for key in keys:
        label, opts = SETTINGS[key]
        if opts.get("compile") and backend != "inductor":
            label += f" [backend {backend}]"
        row = {"key": key, "setting": label}
        try:
            row |= time_steps(cfg, a.batch, a.steps, a.warmup, dev, opts, backend)
            print(
                f"{label:50s} {row['ms_per_step']:8.2f} ms/step {row['us_per_image']:8.1f} us/image"
                f"  (first step {row['first_step_seconds']:.1f} s)",
                flush=True,
            )
        except Exception as e:  # one failing setting (a compiler error) must not lose the rest
            row["error"] = f"{type(e).__name__}: {e}"
            print(f"{label:50s} FAILED {row['error'][:200]}", flush=True)
        finally:
            if opts.get("compile"):
                torch._dynamo.reset()
            if cuda:
                torch.cuda.empty_cache()
        rows.append(row)
        result = {**info, "rows": rows, "written": time.time()}
        (a.out / "step.json").write_text(json.dumps(result, indent=1))
        md = f"Training step, {name}, torch {torch.__version__}.\n\n{table(rows)}\n\n"
        (a.out / "step.md").write_text(md + f"Command: `{info['command']}`\n")
    print()
    print(table(rows))
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
