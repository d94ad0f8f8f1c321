"""Tokens per second of data-parallel GPT training with 1, 2, ... processes, side by side.

    python tools/bench_ddp.py --world 1 2 --threads 1 --steps 40

Each world size is launched as ``torchrun`` would launch it (gloo on the CPU, NCCL on GPUs, one
GPU per process), trains the same character GPT on Tiny Shakespeare windows with the same
*global* batch for ``--steps`` steps after ``--warm`` untimed ones, and reports tokens per second
of the whole job. Prints one Markdown table; the ratios are measured in one run.
``--metrics FILE`` also writes the rows with the run's record (commit, date, versions), as a
recipe's ``metrics.json``, for ``tools/results_tables.py`` (``book/results/metrics/``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

from arnb import distributed
from arnb.data.files import write_atomic


def _worker(rank: int, world: int, port: int, args, out: str) -> None:
    distributed.simulate_rank(rank, world, port)
    torch.set_num_threads(args.threads)
    from arnb.data import load_shakespeare, random_windows
    from arnb.models import GPT, GPTConfig
    from arnb.tokenizers import CharTokenizer
    from arnb.train import Schedule, train

    device = torch.device("cpu")
    if torch.cuda.is_available():
        device = torch.device("cuda", rank)
        torch.cuda.set_device(device)
    text = load_shakespeare()
    tok = CharTokenizer(text)
    ids = tok.encode(text)
    torch.manual_seed(0)
    cfg = GPTConfig(
        vocab_size=tok.vocab_size,
        block_size=args.block,
        n_layer=args.layers,
        n_head=4,
        n_embd=args.embd,
        dropout=0.0,
    )
    model = GPT(cfg).to(device)
    batches = random_windows(ids.to(device), args.batch, args.block, seed=1)
    loss = lambda m, x: m.nll(x)  # noqa: E731
    try:
        train(
            model, loss, batches, Schedule(steps=args.warm, batch_size=args.batch), progress=False
        )
        t0 = time.perf_counter()
        train(
            model, loss, batches, Schedule(steps=args.steps, batch_size=args.batch), progress=False
        )
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    finally:
        distributed.leave()
    if rank == 0:
        tokens = args.steps * args.batch * args.block
        Path(out).write_text(json.dumps({"seconds": seconds, "tokens_per_s": tokens / seconds}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--world", type=int, nargs="+", default=[1, 2])
    p.add_argument("--threads", type=int, default=1, help="CPU threads per process")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warm", type=int, default=5)
    p.add_argument("--batch", type=int, default=32, help="global batch (split among ranks)")
    p.add_argument("--block", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--embd", type=int, default=128)
    p.add_argument("--metrics", type=Path, help="also write the results here, as JSON")
    args = p.parse_args()
    from arnb.config import setup

    env = setup(profile="gpu" if torch.cuda.is_available() else "cpu", verbose=False)
    rows = []
    for world in args.world:
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "r.json")
            mp.spawn(
                _worker, args=(world, distributed.free_port(), args, out), nprocs=world, join=True
            )
            rows.append((world, json.loads(Path(out).read_text())))
    base = rows[0][1]["tokens_per_s"]
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    print(f"GPT {args.layers}x{args.embd}, block {args.block}, global batch {args.batch}, ")
    print(f"{args.steps} timed steps, {args.threads} thread(s) per process, {device}\n")
    print("| processes | seconds | tokens/s | speed-up |")
    print("|---|---|---|---|")
    for world, r in rows:
        speed = r["tokens_per_s"] / base
        print(f"| {world} | {r['seconds']:.2f} | {r['tokens_per_s']:,.0f} | {speed:.2f}x |")
    if args.metrics:
        config = {k: v for k, v in vars(args).items() if k != "metrics"}
        result = {
            "recipe": "bench-ddp",
            "metrics": {
                "config": config,
                "rows": [
                    {"processes": w, **r, "speedup": r["tokens_per_s"] / base} for w, r in rows
                ],
            },
            "seconds": round(time.time() - env.started, 1),
            "command": "python " + " ".join(sys.argv),
            **env.record(),
            "cpu_threads": args.threads,  # per process; the parent's own count means nothing
        }
        write_atomic(args.metrics, (json.dumps(result, indent=2) + "\n").encode())


if __name__ == "__main__":
    main()
