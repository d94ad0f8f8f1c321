"""Does dropout stop the gated PixelCNN from overfitting binarized MNIST? One run per rate, side
by side in one process, on a subset small enough to overfit within the run.

    python tools/ablate_pixelcnn_dropout.py --dropout 0 0.1 0.2 0.4 [--metrics FILE]
    python tools/ablate_pixelcnn_dropout.py --smoke       # tiny sizes: the code path

Each run is ``arnb.chapters.ch05_pixelcnn.fit`` (the recipe's own loop: held-out images, weight
average, the best weights kept) on the first ``--train`` training images, the last ``--valid``
of them held out, with the gpu recipe's network shape and schedule resized, and only the dropout
rate changed between runs (same seeds: same initial weights, same batches). The test split is
never scored: a rate is chosen on held-out images, as the recipe chooses its stopping step.
Reported per rate: the best held-out NLL (nats per image), the step it came at, and the last
one; a last figure well above the best is overfitting.

``--metrics FILE`` writes the rows with the run's record (commit, date, versions), as a recipe's
``metrics.json``, for ``tools/results_tables.py`` (``book/results/metrics/``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import arnb
from arnb.chapters.ch05_pixelcnn import SIZES, Ch05Run, fit
from arnb.data.files import write_atomic


def run_for(args, dropout: float) -> Ch05Run:
    """The gpu binary recipe's run, resized, with ``dropout``."""
    gpu = SIZES["gpu"].binary
    dilations = (gpu.model.dilations * args.layers)[: args.layers]
    net = replace(
        gpu.model, hidden=args.hidden, layers=args.layers, dilations=dilations, dropout=dropout
    )
    schedule = replace(
        gpu.schedule,
        steps=args.steps,
        batch_size=args.batch,
        warmup=max(1, args.steps // 20),
        eval_every=args.eval_every,
        average=args.average,
        seconds=None,
        time_limit=None,
    )
    return Ch05Run(net, schedule, train_subset=args.train, test_subset=1, valid=args.valid)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dropout", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.4])
    ap.add_argument("--train", type=int, default=1500, help="training images, held-out included")
    ap.add_argument("--valid", type=int, default=1000, help="of them held out")
    ap.add_argument("--hidden", type=int, default=24)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--eval-every", type=int, default=125)
    ap.add_argument("--average", type=float, default=0.995, help="weight-average decay")
    ap.add_argument("--metrics", type=Path, default=None)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, a few steps")
    args = ap.parse_args(argv)
    if args.smoke:
        args.train, args.valid, args.hidden, args.layers = 64, 16, 8, 2
        args.steps, args.batch, args.eval_every, args.average = 4, 8, 2, None
    if any(not 0.0 <= p < 1.0 for p in args.dropout):
        ap.error(f"every --dropout must be in [0, 1), got {args.dropout}")
    env = arnb.setup(profile="smoke" if args.smoke else "cpu")
    started = time.time()
    rows = []
    for p in args.dropout:
        sizes = replace(SIZES["gpu"], binary=run_for(args, p), eval_batch=500)
        _, hist, _, info = fit("binary", env, sizes, progress=False)
        # nats per image as scored, not the rounded per-dimension curve of ``info``
        curve = [[s, e["valid_nll_nats"]] for s, e in zip(hist.eval_step, hist.eval)]
        best = min(v for _, v in curve)
        row = {
            "dropout": p,
            "best_valid_nats": best,
            "best_step": info["selected_step"],
            "last_valid_nats": curve[-1][1],
            "overfit_nats": curve[-1][1] - best,
            "train_seconds": info["train_seconds"],
            "valid_curve_nats": curve,
        }
        rows.append(row)
        print(
            f"dropout {p:.2f}: best held-out {row['best_valid_nats']:.2f} nats at step "
            f"{row['best_step']:,}, last {row['last_valid_nats']:.2f} ({info['train_seconds']} s)",
            flush=True,
        )
    print("\n| dropout | best held-out NLL | at step | last | last - best |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['dropout']:.2f} | {r['best_valid_nats']:.2f} | {r['best_step']:,} "
            f"| {r['last_valid_nats']:.2f} | {r['overfit_nats']:.2f} |"
        )
    if args.metrics:
        config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        result = {
            "recipe": "pixelcnn-dropout",
            "metrics": {"config": config, "rows": rows},
            "seconds": round(time.time() - started, 1),
            "command": "python " + " ".join(sys.argv),
            **env.record(),
        }
        write_atomic(args.metrics, (json.dumps(result, indent=2) + "\n").encode())


if __name__ == "__main__":
    main()
