"""Chapter 5 recipes: gated PixelCNNs on binarized MNIST, 8-bit MNIST and coloured MNIST,
and the naive-versus-fast sampling benchmark.

    python -m arnb run pixelcnn-binary --profile gpu    # binarized MNIST, test NLL in nats
    python -m arnb run pixelcnn-mnist8 --profile gpu    # 8-bit MNIST, test bits/dim
    python -m arnb run pixelcnn-color  --profile cpu    # coloured MNIST, class-conditional
    python -m arnb run pixelcnn-sampling-speed --profile cpu

All sizes live in :data:`SIZES`. The notebook calls the same functions step by step.
On the ``gpu`` profile a run first times a few training steps on a throw-away copy of the
model and then sets the number of steps so that training fits ``train_seconds`` (the GPU may be
shared with other jobs); ``time_limit`` is a second safety net.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, replace
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from ..config import Setup, pick
from ..data import load_binary_mnist, load_mnist
from ..data.colored_mnist import load_colored_mnist
from ..metrics import bits_per_dim
from ..models.pixelcnn import GatedPixelCNN, PixelCNNConfig
from ..plotting import image_grid, plot_history, save_figure
from ..train import History, train
from . import recipe

# ----------------------------------------------------------------------------------------------
# sizes, in one place


@dataclass
class RunSizes:
    """One training run: model width/depth, optimisation and data subsets (None = all)."""

    hidden: int = 64
    layers: int = 7
    dilations: tuple[int, ...] = (1, 2, 1, 4, 1, 2, 1)
    first_kernel: int = 7
    batch: int = 128
    steps: int = 1000  # upper bound on the gpu profile (see train_seconds)
    lr: float = 2e-3
    warmup: int = 100
    train_subset: int | None = None
    test_subset: int | None = None
    valid: int = 1000  # last training images held out: the curve and the choice of weights
    eval_every: int | None = None
    train_seconds: float | None = None  # gpu: fit the steps into this many seconds
    time_limit: float | None = None  # safety net passed to train()
    ema: float | None = None  # evaluate an exponential moving average of the weights


@dataclass
class Ch05Sizes:
    binary: RunSizes
    mnist8: RunSizes
    color: RunSizes
    color_bits: int = 2
    color_size: int = 14
    num_samples: int = 16  # images drawn for the sample grids
    bench_n: int = 64  # batch of the naive-vs-fast sampling benchmark
    notebook_bench_n: int = 64  # the notebook's side-by-side run (the recipe always uses bench_n)
    eval_batch: int = 500


# Each profile's three runs share most sizes: one base run per profile, varied per data set.
_SMOKE = RunSizes(
    hidden=8,
    layers=2,
    dilations=(1, 1),
    batch=16,
    steps=3,
    warmup=1,
    train_subset=64,
    test_subset=32,
    valid=16,
)
_CPU = RunSizes(
    hidden=24,
    layers=4,
    dilations=(1, 2, 1, 2),
    batch=32,
    steps=400,
    lr=3e-3,
    warmup=30,
    eval_every=100,
)
_GPU = RunSizes(
    hidden=64,
    layers=7,
    batch=256,  # 17 ms per step alone on an H200 (tools/bench_pixelcnn_step.py)
    steps=40000,
    lr=2e-3,
    warmup=200,
    eval_every=1000,
    ema=0.999,
    valid=5000,
)

SIZES = {
    "smoke": Ch05Sizes(
        binary=_SMOKE,
        mnist8=replace(_SMOKE),
        color=replace(_SMOKE, hidden=12),
        num_samples=4,
        bench_n=4,
        eval_batch=32,
    ),
    "cpu": Ch05Sizes(
        binary=_CPU,
        mnist8=replace(_CPU),
        color=replace(_CPU, dilations=(1, 2, 1, 1), steps=500, test_subset=2000),
        num_samples=16,
        bench_n=64,
        notebook_bench_n=16,
        eval_batch=500,
    ),
    "gpu": Ch05Sizes(
        # Run the two MNIST recipes one after the other: sharing the card made each step about
        # 2.5 times slower, and the step count is planned from a timing taken at the start.
        # Binary overfits after about 17 epochs (4,000 steps); 120 s alone are about 7,000 steps.
        binary=replace(_GPU, eval_every=500, train_seconds=120, time_limit=135),
        mnist8=replace(_GPU, train_seconds=350, time_limit=365),
        color=RunSizes(
            hidden=96,
            layers=7,
            batch=128,
            steps=20000,
            lr=2e-3,
            warmup=200,
            eval_every=1000,
            train_seconds=150,
            time_limit=200,
        ),
        color_size=28,
        num_samples=64,
        bench_n=64,
        eval_batch=500,
    ),
}


# ----------------------------------------------------------------------------------------------
# data and training


class ShuffledBatches:
    """Re-shuffled mini-batches ``(x, y)`` of a data set kept on the device as uint8.

    Iterating gives one epoch; :func:`arnb.train.train` iterates again when it runs out.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch: int, seed: int, device):
        self.x = x.to(device=device, dtype=torch.uint8)
        self.y = y.to(device)
        self.batch = min(batch, len(x))
        self.g = torch.Generator().manual_seed(seed)

    def __iter__(self):
        order = torch.randperm(len(self.x), generator=self.g).to(self.x.device)
        for k in range(0, len(order) - self.batch + 1, self.batch):
            idx = order[k : k + self.batch]
            yield self.x[idx].long(), self.y[idx]


def subset(x: torch.Tensor, y: torch.Tensor, n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    return (x, y) if n is None else (x[:n], y[:n])


def load_task(task: str, sizes: Ch05Sizes):
    """``(train_x, train_y), (test_x, test_y), num_classes, channels`` for a task."""
    if task == "binary":
        tr, te, k, c = load_binary_mnist("train"), load_binary_mnist("test"), 2, 1
    elif task == "mnist8":
        tr, te, k, c = load_mnist("train"), load_mnist("test"), 256, 1
    elif task == "color":
        b, s = sizes.color_bits, sizes.color_size
        tr, te, k, c = load_colored_mnist("train", b, s), load_colored_mnist("test", b, s), 2**b, 3
    else:
        raise ValueError(f"unknown task {task!r}: binary, mnist8 or color")
    run = getattr(sizes, task)
    return subset(*tr, run.train_subset), subset(*te, run.test_subset), k, c


def make_model(
    run: RunSizes,
    num_classes: int,
    channels: int,
    height: int = 28,
    width: int = 28,
    num_labels: int = 0,
) -> GatedPixelCNN:
    cfg = PixelCNNConfig(
        channels=channels,
        height=height,
        width=width,
        num_classes=num_classes,
        hidden=run.hidden,
        layers=run.layers,
        dilations=run.dilations,
        first_kernel=run.first_kernel,
        num_labels=num_labels,
    )
    return GatedPixelCNN(cfg)


@torch.no_grad()
def evaluate(
    model, x: torch.Tensor, y: torch.Tensor | None = None, batch: int = 500
) -> dict[str, float]:
    """Mean test NLL in nats per image and bits/dim over all of ``x``, in float32, fixed batches."""
    model.eval()
    total, device = 0.0, model.device
    for k in range(0, len(x), batch):
        xb = x[k : k + batch].to(device)
        yb = None if y is None else y[k : k + batch].to(device)
        total += float(model.log_prob(xb, yb).double().sum())
    nll = -total / len(x)
    dims = model.config.dims
    return {
        "nll_nats": nll,
        "nats_per_dim": nll / dims,
        "bits_per_dim": float(bits_per_dim(nll, dims)),
    }


def loss_per_dim(model, batch, conditional: bool = False) -> torch.Tensor:
    """Training loss: mean NLL in nats per dimension (scale-free, so one lr fits all tasks)."""
    x, y = batch
    return model.nll(x, y if conditional else None, validate=False) / model.config.dims


def calibrate_steps(model, batches, run: RunSizes, conditional: bool, probe_steps: int = 25) -> int:
    """Steps that fit ``run.train_seconds``, timed on a throw-away copy of the model."""
    if run.train_seconds is None:
        return run.steps
    probe = copy.deepcopy(model)
    hist = train(
        probe,
        lambda m, b: loss_per_dim(m, b, conditional),
        batches,
        steps=5,
        lr=run.lr,
        progress=False,
    )  # warm-up: kernels selected, memory allocated
    sync = torch.cuda.synchronize if model.device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.time()
    hist = train(
        probe,
        lambda m, b: loss_per_dim(m, b, conditional),
        batches,
        steps=probe_steps,
        lr=run.lr,
        progress=False,
    )
    sync()
    per_step = (time.time() - t0) / probe_steps
    del probe, hist
    return max(run.warmup + 1, min(run.steps, int(run.train_seconds / per_step)))


class WeightAverage:
    """Exponential moving average of a model's weights (Polyak averaging), evaluated instead of
    the last iterate: it smooths out the noise of the final steps at no extra training cost."""

    def __init__(self, model, decay: float):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay

    @torch.no_grad()
    def update(self, model) -> None:
        ours = list(self.model.parameters())
        torch._foreach_lerp_(ours, [p.detach() for p in model.parameters()], 1.0 - self.decay)


def fit(task: str, env: Setup, sizes: Ch05Sizes, conditional: bool = False, progress: bool = True):
    """Train a gated PixelCNN on ``task``; return ``model, history, test_data, info``.

    The last ``run.valid`` training images are held out. Every ``eval_every`` steps the model
    (its weight average, when there is one) is scored on them, and the returned model has the
    weights that scored best: longer runs overfit binarized MNIST, and this picks the stopping
    point without looking at the test split.
    """
    run = getattr(sizes, task)
    (xtr, ytr), (xte, yte), k, c = load_task(task, sizes)
    if not 0 < run.valid < len(xtr):
        raise ValueError(f"valid must be between 1 and {len(xtr) - 1} images, got {run.valid}")
    xva, yva = xtr[-run.valid :], ytr[-run.valid :]
    xtr, ytr = xtr[: -run.valid], ytr[: -run.valid]
    torch.manual_seed(env.seed)
    model = make_model(run, k, c, xtr.shape[2], xtr.shape[3], 10 if conditional else 0).to(
        env.device
    )
    batches = ShuffledBatches(xtr, ytr, run.batch, env.seed, env.device)
    steps = calibrate_steps(model, batches, run, conditional)
    ema = WeightAverage(model, run.ema) if run.ema else None
    best = {"nll": float("inf"), "state": None}

    def eval_fn(m):
        scored = ema.model if ema is not None else m
        r = evaluate(scored, xva, yva if conditional else None, sizes.eval_batch)
        if r["nll_nats"] < best["nll"]:  # keep a copy of the best weights so far
            state = {k: v.detach().clone() for k, v in scored.state_dict().items()}
            best.update(nll=r["nll_nats"], state=state)
        return {"valid_" + k: v for k, v in r.items()}

    def loss_fn(m, b):
        if ema is not None:
            ema.update(m)  # the weights after the previous step
        return loss_per_dim(m, b, conditional)

    t0 = time.time()
    hist = train(
        model,
        loss_fn,
        batches,
        steps=steps,
        lr=run.lr,
        warmup=run.warmup,
        eval_fn=eval_fn,
        eval_every=run.eval_every,
        time_limit=run.time_limit,
        progress=progress,
    )
    # (the average lacks the very last step's weights: the final evaluation scored it as it is)
    model = ema.model if ema is not None else model
    model.load_state_dict(best["state"])
    model.eval()
    scores = [e["valid_nll_nats"] for e in hist.eval]
    info = {
        "train_seconds": round(time.time() - t0, 1),
        "steps": hist.eval_step[-1],
        "steps_planned": steps,
        "selected_step": hist.eval_step[scores.index(min(scores))],
        "valid_images": len(xva),
        "valid_nats_per_dim": round(best["nll"] / model.config.dims, 5),
        "valid_curve": [
            [s_, round(e["valid_nats_per_dim"], 5)] for s_, e in zip(hist.eval_step, hist.eval)
        ],
        "batch": run.batch,
        "parameters": model.num_parameters(),
        "effective_parameters": model.effective_parameters(),
        "train_images": len(xtr),
        "weight_average": run.ema,
    }
    return model, hist, (xte, yte), info


# ----------------------------------------------------------------------------------------------
# sampling benchmark


def time_sampler(fn, device) -> tuple[torch.Tensor, float]:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.time()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.time() - t0


def sampling_benchmark(
    model: GatedPixelCNN,
    n: int,
    seed: int = 0,
    naive: bool = True,
    label=None,
    progress: bool = True,
) -> dict:
    """Time the naive loop and the fast sampler on the same ``n`` images from the same seed."""
    model.eval()
    dev = model.device
    fast, t_fast = time_sampler(
        lambda: model.sample_fast(
            n, label=label, progress=progress, generator=torch.Generator().manual_seed(seed)
        ),
        dev,
    )
    out = {"n": n, "fast_seconds": round(t_fast, 3), "device": str(dev)}
    if naive:
        slow, t_slow = time_sampler(
            lambda: model.sample_naive(
                n, label=label, progress=progress, generator=torch.Generator().manual_seed(seed)
            ),
            dev,
        )
        same = (slow == fast).flatten(1).all(1)
        out.update(
            naive_seconds=round(t_slow, 3),
            speedup=round(t_slow / t_fast, 1),
            identical_images=int(same.sum()),
            samples=fast.cpu(),
        )
    else:
        out["samples"] = fast.cpu()
    return out


# ----------------------------------------------------------------------------------------------
# recipes


def _curve(hist: History, out: Path, name: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    plot_history(hist, "valid_nats_per_dim", ax=ax, ylabel="NLL (nats per dimension)")
    save_figure(fig, out, name)
    plt.close(fig)


def _grid(images: torch.Tensor, out: Path, name: str, title: str, vmax=None) -> None:
    fig, ax = plt.subplots(figsize=(6, 6))
    image_grid(images, nrow=8, ax=ax, title=title, vmax=vmax)
    save_figure(fig, out, name)
    plt.close(fig)


def _completions(model, xte: torch.Tensor, out: Path, name: str, seed: int) -> None:
    """Top halves of 8 test digits, three completions each."""
    top = xte[:8, :, : xte.shape[2] // 2].to(model.device)
    prompt = top.repeat_interleave(3, dim=0)
    done = model.sample(len(prompt), prompt=prompt, generator=torch.Generator().manual_seed(seed))
    originals = xte[:8].unsqueeze(1)
    grid = torch.cat([originals.to(done.device), done.view(8, 3, *done.shape[1:])], 1).flatten(0, 1)
    _grid(grid.cpu(), out, name, "test digit, then 3 completions of its top half", vmax=None)


def _summary(task_metrics: dict, info: dict, sizes: RunSizes, env: Setup) -> dict:
    return {
        **task_metrics,
        **info,
        "hidden": sizes.hidden,
        "layers": sizes.layers,
        "dilations": list(sizes.dilations),
        "lr": sizes.lr,
        "profile": env.profile,
    }


@recipe(
    "pixelcnn-binary",
    "gated PixelCNN on binarized MNIST: test NLL (nats), samples, sampling speed-up",
)
def pixelcnn_binary(env: Setup, out: Path) -> dict:
    sizes = pick(SIZES, env.profile)
    model, hist, (xte, yte), info = fit("binary", env, sizes)
    test = evaluate(model, xte, None, sizes.eval_batch)
    print(f"binarized MNIST: test NLL {test['nll_nats']:.2f} nats ({len(xte)} test images)")
    _curve(hist, out, "binary_loss")
    bench = sampling_benchmark(model, sizes.bench_n, env.seed, progress=False)
    _grid(
        bench.pop("samples")[: sizes.num_samples],
        out,
        "binary_samples",
        "samples (binarized MNIST)",
    )
    _completions(model, xte, out, "binary_completions", env.seed)
    return {
        "test_nll_nats": test["nll_nats"],
        "test_bits_per_dim": test["bits_per_dim"],
        "test_images": len(xte),
        "binarization": "arnb.data.load_binary_mnist (Bernoulli(v/255), "
        "drawn once with seed 0 for train, 1 for test)",
        "sampling": bench,
        **_summary({}, info, sizes.binary, env),
    }


@recipe(
    "pixelcnn-mnist8", "gated PixelCNN on 8-bit MNIST (256-way softmax): test bits/dim, samples"
)
def pixelcnn_mnist8(env: Setup, out: Path) -> dict:
    sizes = pick(SIZES, env.profile)
    model, hist, (xte, yte), info = fit("mnist8", env, sizes)
    test = evaluate(model, xte, None, sizes.eval_batch)
    print(f"8-bit MNIST: test {test['bits_per_dim']:.4f} bits/dim ({len(xte)} test images)")
    _curve(hist, out, "mnist8_loss")
    samples = model.sample(sizes.num_samples, generator=torch.Generator().manual_seed(env.seed))
    _grid(samples.cpu(), out, "mnist8_samples", "samples (8-bit MNIST)", vmax=255)
    return {
        "test_bits_per_dim": test["bits_per_dim"],
        "test_nll_nats": test["nll_nats"],
        "test_images": len(xte),
        **_summary({}, info, sizes.mnist8, env),
    }


@recipe("pixelcnn-color", "class-conditional gated PixelCNN on coloured MNIST (RGB channel order)")
def pixelcnn_color(env: Setup, out: Path) -> dict:
    sizes = pick(SIZES, env.profile)
    model, hist, (xte, yte), info = fit("color", env, sizes, conditional=True)
    test = evaluate(model, xte, yte, sizes.eval_batch)
    print(f"coloured MNIST: test {test['bits_per_dim']:.4f} bits/dim given the label")
    _curve(hist, out, "color_loss")
    labels = torch.arange(10).repeat_interleave(max(1, sizes.num_samples // 10))
    samples = model.sample(
        len(labels), label=labels.to(env.device), generator=torch.Generator().manual_seed(env.seed)
    )
    _grid(
        samples.cpu(),
        out,
        "color_samples",
        "class-conditional samples, one row per class",
        vmax=2**sizes.color_bits - 1,
    )
    return {
        "test_bits_per_dim_given_label": test["bits_per_dim"],
        "test_nll_nats_given_label": test["nll_nats"],
        "bits": sizes.color_bits,
        "size": sizes.color_size,
        "test_images": len(xte),
        **_summary({}, info, sizes.color, env),
    }


@recipe(
    "pixelcnn-sampling-speed", "naive vs fast PixelCNN sampling of 64 binarized digits (same seed)"
)
def pixelcnn_sampling_speed(env: Setup, out: Path) -> dict:
    """Speed does not depend on the weights, so an untrained model of the profile's binary size
    is timed; the samples of both loops are compared image by image."""
    sizes = pick(SIZES, env.profile)
    torch.manual_seed(env.seed)
    model = make_model(sizes.binary, 2, 1).to(env.device)
    bench = sampling_benchmark(model, sizes.bench_n, env.seed, naive=True, progress=False)
    bench.pop("samples")
    return {
        **bench,
        "hidden": sizes.binary.hidden,
        "layers": sizes.binary.layers,
        "parameters": model.num_parameters(),
        "threads": torch.get_num_threads(),
    }


__all__ = ["SIZES", "Ch05Sizes", "RunSizes", "evaluate", "fit", "sampling_benchmark"]
