"""Time one training step of the gpu-profile 8-bit PixelCNN under a few backend settings, side by
side in one process, and print milliseconds per step and the ratio to the first setting.

    python tools/bench_pixelcnn_step.py [--batch 256] [--steps 50]

Settings: bf16 autocast as the recipes train (cuDNN heuristics), the same with
``cudnn.benchmark`` (cuDNN times its algorithms once per shape), the same with channels-last
tensors, and float32 (TF32) with ``cudnn.benchmark``. Random images: speed does not depend on data.
"""

from __future__ import annotations

import argparse
import contextlib

import torch

from arnb.chapters.ch05_pixelcnn import SIZES
from arnb.models.pixelcnn import GatedPixelCNN
from arnb.train import Stopwatch, autocast
from arnb.validation import validation


def time_steps(batch: int, steps: int, bench: bool, channels_last: bool, bf16: bool) -> float:
    torch.backends.cudnn.benchmark = bench
    torch.manual_seed(0)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = GatedPixelCNN(SIZES["gpu"].mnist8.model).to(dev)
    x = torch.randint(0, 256, (batch, 1, 28, 28), device=dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ctx = autocast(dev) if bf16 else contextlib.nullcontext()

    def step():
        with ctx:
            loss = model.nll(x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    with validation(False):  # as train() runs after its first batch: no value checks
        for _ in range(10):  # warm-up: algorithm search, allocator
            step()
        with Stopwatch(dev) as watch:
            for _ in range(steps):
                step()
    return 1000 * watch.seconds / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=50)
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    settings = [
        ("bf16, heuristics (as trained)", False, False, True),
        ("bf16, cudnn.benchmark", True, False, True),
        ("bf16, cudnn.benchmark, channels-last", True, True, True),
        ("fp32/TF32, cudnn.benchmark", True, False, False),
    ]
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"{name}, torch {torch.__version__}, batch {a.batch}, {a.steps} timed steps")
    base = None
    for label, bench, cl, bf16 in settings:
        ms = time_steps(a.batch, a.steps, bench, cl, bf16)
        base = base or ms
        print(f"{label:40s} {ms:8.2f} ms/step   {base / ms:5.2f}x")


if __name__ == "__main__":
    main()
