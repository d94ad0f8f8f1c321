"""Chapter 1: full joint table vs logistic AR (FVSBN) vs MADE on tiny binarized MNIST.

Two recipes share the functions below with the notebook ``01_factorization``:

- ``ch01-mnist4``: the chapter's results table on 4x4 images (D = 16): parameters, train NLL and
  test NLL of the three models, each trained on the whole 55,000-image pool, plus the exact
  normalisation check (all 65,536 probabilities summed) and a sample grid.
- ``ch01-sample-complexity``: test NLL as the training set grows (100 -> 55,000 images) and as
  D grows (4x4, 5x5, 7x7), with the fraction of test images never seen in training.

Protocol (see :mod:`arnb.data.tiny_mnist`): the table's smoothing strength and the networks'
stopping point are chosen on the 5,000 validation images, never on the test set. NLLs are mean
nats per image.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from ..config import Setup, pick
from ..data.tiny_mnist import TinyMNIST, pattern_stats, tiny_mnist_splits
from ..enumeration import enumerate_log_probs
from ..metrics import bits_per_dim
from ..models.fvsbn import FVSBN, BinaryAR
from ..models.joint_table import JointTable, select_alpha
from ..models.made import MADE, MADEConfig
from ..plotting import image_grid, save_figure
from ..train import train
from . import recipe


@dataclass
class Ch01Sizes:
    """Every size of chapter 1 for one profile."""

    image_sizes: tuple[int, ...] = (4, 5, 7)  # S of the S x S images in the sweep over D
    train_sizes: tuple[int, ...] = (100, 1000, 10000, 55000)  # images in the sweep over N
    made_hidden: tuple[int, ...] = (128,)
    steps: int = 1500  # optimiser steps for the largest training sets
    min_epochs_steps: int = 200  # at least this many steps, whatever N
    batch_size: int = 512
    lr_fvsbn: float = 0.02
    lr_made: float = 3e-3
    eval_every: int = 100
    alphas: tuple[float, ...] = field(default_factory=lambda: tuple(10.0**e for e in range(-16, 2)))
    num_samples: int = 20000  # samples drawn to check the sampler against exact probabilities
    time_limit: float = 120.0  # seconds per fit: a safety net, the step count normally ends it
    budget: float = 600.0  # seconds for a whole sweep: later fits are skipped (and listed) past it


SIZES = {
    "smoke": Ch01Sizes(
        image_sizes=(4, 5),
        train_sizes=(300,),
        made_hidden=(32,),
        steps=40,
        min_epochs_steps=20,
        eval_every=20,
        num_samples=2000,
        time_limit=20.0,
        budget=60.0,
    ),
    "cpu": Ch01Sizes(),
    "gpu": Ch01Sizes(
        image_sizes=(4, 5, 6, 7),
        train_sizes=(100, 300, 1000, 3000, 10000, 30000, 55000),
        made_hidden=(512, 512),
        steps=4000,
        min_epochs_steps=400,
        batch_size=1024,
        lr_made=2e-3,
        eval_every=200,
        num_samples=100000,
        time_limit=40.0,
        budget=240.0,
    ),
}


class Minibatches:
    """Random minibatches of ``data (N, D)``, reshuffled each epoch from a seeded generator."""

    def __init__(self, data: torch.Tensor, batch_size: int, seed: int = 0):
        self.data, self.batch_size = data, min(batch_size, len(data))
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self):
        perm = torch.randperm(len(self.data), generator=self.generator)
        for i in range(0, len(perm) - self.batch_size + 1, self.batch_size):
            yield self.data[perm[i : i + self.batch_size]]


@contextlib.contextmanager
def one_thread(device: torch.device | str = "cpu"):
    """Run tiny CPU models on one thread: for matrices this small, synchronising two threads costs
    more than the arithmetic (on a busy two-core machine, ten times more)."""
    if torch.device(device).type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@torch.no_grad()
def mean_nll(model: BinaryAR, x: torch.Tensor, batch_size: int = 8192) -> float:
    """Mean ``-log p(x)`` in nats per image over ``x (N, D)``, in float32/64 (no autocast)."""
    device = model.device
    total = 0.0
    with one_thread(device):
        for i in range(0, len(x), batch_size):
            total += float(-model.log_prob(x[i : i + batch_size].to(device)).double().sum())
    return total / len(x)


def fit_table(train_x: torch.Tensor, val_x: torch.Tensor, sizes: Ch01Sizes) -> JointTable:
    """A joint table on ``train_x`` with the smoothing strength that is best on ``val_x``."""
    alpha, _ = select_alpha(train_x, val_x, list(sizes.alphas))
    return JointTable(train_x.shape[1], alpha=alpha).fit(train_x)


def fit_ar(
    model: BinaryAR,
    train_x: torch.Tensor,
    val_x: torch.Tensor,
    sizes: Ch01Sizes,
    lr: float,
    device: torch.device | str = "cpu",
    seed: int = 0,
    progress: bool = False,
) -> dict:
    """Train FVSBN or MADE by minimising the NLL; keep the weights with the best validation NLL.

    The number of steps grows with the training set (about 30 epochs, between
    ``min_epochs_steps`` and ``steps``): small sets need few steps and would only overfit more.
    Returns the training history and the chosen step.
    """
    model.to(device)
    model.init_bias(train_x)
    n = len(train_x)
    steps = int(min(sizes.steps, max(sizes.min_epochs_steps, 30 * n / sizes.batch_size)))
    best = {"nll": math.inf, "state": copy.deepcopy(model.state_dict()), "step": 0}
    val_dev = val_x.to(device)
    evals = 0

    def evaluate(m: BinaryAR) -> dict[str, float]:
        nonlocal evals
        evals += 1
        nll = float(-m.log_prob(val_dev).float().mean())
        if nll < best["nll"]:
            best.update(nll=nll, state=copy.deepcopy(m.state_dict()), step=evals)
        return {"val_nll": nll}

    eval_every = min(sizes.eval_every, max(10, steps // 10))
    with one_thread(device):
        hist = train(
            model,
            lambda m, x: m.nll(x),
            Minibatches(train_x.to(device), sizes.batch_size, seed),
            steps=steps,
            lr=lr,
            eval_fn=evaluate,
            eval_every=eval_every,
            progress=progress,
            log_every=max(1, steps // 50),
            time_limit=sizes.time_limit,
        )
    model.load_state_dict(best["state"])
    model.eval()
    return {
        "history": hist,
        "best_val_nll": best["nll"],
        "steps": hist.step[-1] + 1 if hist.step else 0,
    }


def make_made(dims: int, sizes: Ch01Sizes, seed: int = 0) -> MADE:
    return MADE(MADEConfig(dims=dims, hidden=tuple(sizes.made_hidden), seed=seed))


def compare_models(
    data: TinyMNIST,
    n_train: int,
    sizes: Ch01Sizes,
    device: torch.device | str = "cpu",
    seed: int = 0,
    progress: bool = False,
) -> tuple[list[dict], dict[str, BinaryAR]]:
    """Fit table, FVSBN and MADE on the first ``n_train`` images; one result row per model."""
    train_x = data.train[:n_train]
    torch.manual_seed(seed)
    models: dict[str, BinaryAR] = {}
    rows = []
    for name in ("table", "FVSBN", "MADE"):
        t0 = time.time()
        if name == "table":
            model = fit_table(train_x, data.val, sizes)
            extra = {"alpha": model.alpha, "steps": 0}
        else:
            model = FVSBN(data.dims) if name == "FVSBN" else make_made(data.dims, sizes, seed)
            lr = sizes.lr_fvsbn if name == "FVSBN" else sizes.lr_made
            fit = fit_ar(model, train_x, data.val, sizes, lr, device, seed, progress)
            model.cpu()
            extra = {"steps": fit["steps"]}
        test_nll = mean_nll(model, data.test)
        rows.append(
            {
                "size": data.size,
                "dims": data.dims,
                "n_train": len(train_x),
                "model": name,
                "free_parameters": model.num_free_parameters(),
                "train_nll": mean_nll(model, train_x),
                "val_nll": mean_nll(model, data.val),
                "test_nll": test_nll,
                "test_bits_per_dim": float(bits_per_dim(test_nll, data.dims)),
                "fit_seconds": round(time.time() - t0, 1),
                **extra,
            }
        )
        models[name] = model
    return rows, models


def format_rows(rows: list[dict]) -> str:
    """A markdown table of result rows."""
    head = "| S x S | D | train images | model | free parameters | train NLL | test NLL | test bits/dim |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['size']}x{r['size']} | {r['dims']} | {r['n_train']:,} | {r['model']} | "
            f"{r['free_parameters']:,} | {r['train_nll']:.3f} | {r['test_nll']:.3f} | "
            f"{r['test_bits_per_dim']:.4f} |"
        )
    return "\n".join(lines)


def parameter_counts(dims: int, num_classes: int, hidden: int = 256) -> dict[str, int]:
    """Free parameters of four models of D variables with K categories each (exact integers).

    - joint table: ``K^D - 1``;
    - independent dimensions (no interaction at all): ``D (K - 1)``;
    - logistic (softmax-linear) AR on the one-hot prefix: conditional i has ``K - 1`` outputs,
      each with a bias and ``(K - 1)`` weights per earlier dimension;
    - a shared masked network (MADE-like, one hidden layer of ``hidden`` units, one-hot inputs
      and K logits per dimension): at most ``D K H + H + H D K + D K`` (masks only remove weights).
    """
    d, k, h = dims, num_classes, hidden
    logistic = sum((k - 1) * (1 + (k - 1) * i) for i in range(d))
    return {
        "joint table": k**d - 1,
        "independent": d * (k - 1),
        "logistic AR": logistic,
        "shared network": d * k * h + h + h * d * k + d * k,
    }


def plot_sweep(rows: list[dict], ax=None):
    """Test NLL (bits per dimension) against training-set size, one panel line per model and D."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    styles = {"table": "o-", "FVSBN": "s--", "MADE": "^-."}
    dims = sorted({r["dims"] for r in rows})
    colors = dict(
        zip(dims, plt.cm.viridis([0.1 + 0.8 * i / max(1, len(dims) - 1) for i in range(len(dims))]))
    )
    for d in dims:
        for name, style in styles.items():
            pts = sorted(
                (r["n_train"], r["test_bits_per_dim"])
                for r in rows
                if r["dims"] == d and r["model"] == name
            )
            if pts:
                ax.plot(*zip(*pts), style, color=colors[d], label=f"{name}, D={d}")
    ax.set_xscale("log")
    ax.set_xlabel("training images")
    ax.set_ylabel("test NLL (bits per dimension)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=len(dims))
    return ax


@recipe("ch01-mnist4", "table vs FVSBN vs MADE on 4x4 binarized MNIST: parameters, train/test NLL")
def ch01_mnist4(setup: Setup, out: Path) -> dict:
    sizes = pick(SIZES, setup.profile)
    data = tiny_mnist_splits(4)
    rows, models = compare_models(data, len(data.train), sizes, setup.device, setup.seed)
    print(format_rows(rows))
    metrics: dict = {"rows": rows, "patterns": pattern_stats(data.train, data.test)}
    # The chain rule checked exactly: all 65,536 probabilities of each model sum to one.
    for name, model in models.items():
        _, logp = enumerate_log_probs(model.log_prob, data.dims)
        metrics[f"total_probability_{name}"] = float(torch.logsumexp(logp, 0).exp())
    fig, axes = plt.subplots(1, 4, figsize=(12, 3))
    image_grid(data.images(data.test[:32]), nrow=8, ax=axes[0], title="test images")
    g = torch.Generator().manual_seed(setup.seed)
    for ax, (name, model) in zip(axes[1:], models.items()):
        image_grid(
            data.images(model.sample(32, generator=g)), nrow=8, ax=ax, title=f"{name} samples"
        )
    save_figure(fig, out, "ch01_mnist4_samples")
    plt.close(fig)
    return metrics


def sweep(
    sizes: Ch01Sizes, device: torch.device | str = "cpu", seed: int = 0, progress: bool = False
) -> dict:
    """Fit the three models for every image size and training-set size of ``sizes``.

    Returns ``rows`` (one per model and setting), ``patterns`` (distinct patterns and unseen
    test fraction per setting), ``models`` (``{S: {name: model}}`` fitted on the largest training
    set of each image size) and ``skipped`` (settings left out because ``sizes.budget`` seconds
    had passed; empty normally).
    """
    t0 = time.time()
    rows, patterns, skipped, models = [], [], [], {}
    settings = [(s, n) for s in sizes.image_sizes for n in sizes.train_sizes]
    if progress:
        from tqdm.auto import tqdm

        settings = tqdm(settings, desc="sweep")
    data = None
    for s, n in settings:
        if time.time() - t0 > sizes.budget:
            skipped.append({"size": s, "n_train": n})
            continue
        if data is None or data.size != s:
            data = tiny_mnist_splits(s)
        n = min(n, len(data.train))
        r, fitted = compare_models(data, n, sizes, device, seed)
        rows += r
        patterns.append(pattern_stats(data.train[:n], data.test))
        if n >= max(min(m, len(data.train)) for m in sizes.train_sizes):
            models[s] = fitted
    return {"rows": rows, "patterns": patterns, "models": models, "skipped": skipped}


@recipe("ch01-sample-complexity", "test NLL of table / FVSBN / MADE as the training set and D grow")
def ch01_sample_complexity(setup: Setup, out: Path) -> dict:
    sizes = pick(SIZES, setup.profile)
    result = sweep(sizes, setup.device, setup.seed)
    print(format_rows(result["rows"]), flush=True)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    plot_sweep(result["rows"], ax)
    save_figure(fig, out, "ch01_sample_complexity")
    plt.close(fig)
    return {k: v for k, v in result.items() if k != "models"}
