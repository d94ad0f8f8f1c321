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

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from ..config import Setup, pick
from ..data.batches import Minibatches
from ..data.tiny_mnist import TinyMNIST, pattern_stats, tiny_mnist_splits
from ..enumeration import enumerate_log_probs
from ..metrics import bits_per_dim
from ..models.fvsbn import FVSBN, BinaryAR
from ..models.joint_table import JointTable, select_alpha
from ..models.made import MADE, MADEConfig
from ..plotting import image_grid, save_figure
from ..train import Schedule, cpu_threads, evaluate_nll, train
from . import recipe


def _schedule(lr: float, **kw) -> Schedule:
    # Tiny models run faster on one CPU thread: for matrices this small, synchronising two
    # threads costs more than the arithmetic (on a busy two-core machine, ten times more).
    base = dict(steps=1500, batch_size=512, eval_every=100, time_limit=120.0, threads=1)
    return Schedule(lr=lr, **{**base, **kw})


@dataclass
class Ch01Sizes:
    """Every size of chapter 1 for one profile.

    ``fvsbn`` and ``made`` are the schedules of the largest training sets; smaller sets train
    for ``epochs`` passes, but at least ``min_steps`` steps (:func:`schedule_for`), and are
    evaluated on the validation images about ``evaluations`` times. ``made_net`` is the MADE's
    config; its ``dims`` is replaced by each data set's.
    """

    image_sizes: tuple[int, ...] = (4, 5, 7)  # S of the S x S images in the sweep over D
    train_sizes: tuple[int, ...] = (100, 1000, 10000, 55000)  # images in the sweep over N
    made_net: MADEConfig = field(default_factory=lambda: MADEConfig(dims=16, hidden=(128,)))
    fvsbn: Schedule = field(default_factory=lambda: _schedule(lr=0.02))
    made: Schedule = field(default_factory=lambda: _schedule(lr=3e-3))
    epochs: float = 30.0  # small sets need few steps and would only overfit more
    min_steps: int = 200  # at least this many steps, whatever N
    evaluations: int = 10
    eval_batch: int = 8192  # images scored at once when evaluating a whole split
    alphas: tuple[float, ...] = field(default_factory=lambda: tuple(10.0**e for e in range(-16, 2)))
    num_samples: int = 20000  # samples drawn to check the sampler against exact probabilities
    budget: float = 600.0  # seconds for a whole sweep: later fits are skipped (and listed) past it


SIZES = {
    "smoke": Ch01Sizes(
        image_sizes=(4, 5),
        train_sizes=(300,),
        made_net=MADEConfig(dims=16, hidden=(32,)),
        fvsbn=_schedule(lr=0.02, steps=40, eval_every=20, time_limit=20.0),
        made=_schedule(lr=3e-3, steps=40, eval_every=20, time_limit=20.0),
        min_steps=20,
        num_samples=2000,
        budget=60.0,
    ),
    "cpu": Ch01Sizes(),
    "gpu": Ch01Sizes(
        image_sizes=(4, 5, 6, 7),
        train_sizes=(100, 300, 1000, 3000, 10000, 30000, 55000),
        made_net=MADEConfig(dims=16, hidden=(512, 512)),
        fvsbn=_schedule(
            lr=0.02, steps=4000, batch_size=1024, eval_every=200, time_limit=40.0, threads=None
        ),
        made=_schedule(
            lr=2e-3, steps=4000, batch_size=1024, eval_every=200, time_limit=40.0, threads=None
        ),
        min_steps=400,
        num_samples=100000,
        budget=240.0,
    ),
}


def schedule_for(schedule: Schedule, n: int, sizes: Ch01Sizes) -> Schedule:
    """``schedule`` shortened for ``n`` training images: ``epochs`` passes, at least
    ``min_steps`` steps, at most ``schedule.steps``; about ``evaluations`` evaluations."""
    steps = int(min(schedule.steps, max(sizes.min_steps, sizes.epochs * n / schedule.batch_size)))
    eval_every = max(1, min(schedule.eval_every or steps, steps // sizes.evaluations))
    return replace(schedule, steps=steps, eval_every=eval_every)


def nll_per_image(model: BinaryAR, x: torch.Tensor, sizes: Ch01Sizes) -> float:
    """Mean ``-log p(x)`` in nats per image over the whole split ``x (N, D)``."""
    with cpu_threads(sizes.made.threads):
        return evaluate_nll(model, x.split(sizes.eval_batch))["nats"]


def fit_table(train_x: torch.Tensor, val_x: torch.Tensor, sizes: Ch01Sizes) -> JointTable:
    """A joint table on ``train_x`` with the smoothing strength that is best on ``val_x``."""
    alpha, _ = select_alpha(train_x, val_x, list(sizes.alphas))
    return JointTable(train_x.shape[1], alpha=alpha).fit(train_x)


def fit_ar(
    model: BinaryAR,
    train_x: torch.Tensor,
    val_x: torch.Tensor,
    schedule: Schedule,
    device: torch.device | str = "cpu",
    seed: int = 0,
    progress: bool = False,
) -> dict:
    """Train FVSBN or MADE by minimising the NLL as ``schedule`` says (see :func:`schedule_for`).

    The model ends on ``device``, in eval mode, with the weights that scored best on
    ``val_x``. Returns ``history`` (:class:`arnb.train.History`), ``best_val_nll`` (nats per
    image), ``selected_step`` (when those weights were taken) and ``steps`` (steps trained).
    """
    model.to(device)
    model.init_bias(train_x)
    val = val_x.to(device)
    hist = train(
        model,
        lambda m, x: m.nll(x),
        Minibatches(train_x.to(device), batch_size=schedule.batch_size, seed=seed),
        schedule,
        eval_fn=lambda m: {"val_nll": evaluate_nll(m, [val])["nats"]},
        select="val_nll",
        progress=progress,
        desc=type(model).__name__,
    )
    return {
        "history": hist,
        "best_val_nll": min(e["val_nll"] for e in hist.eval),
        "selected_step": hist.selected_step,
        "steps": hist.eval_step[-1],
    }


def make_made(dims: int, sizes: Ch01Sizes, seed: int = 0) -> MADE:
    return MADE(replace(sizes.made_net, dims=dims, seed=seed))


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
            base = sizes.fvsbn if name == "FVSBN" else sizes.made
            schedule = schedule_for(base, len(train_x), sizes)
            fit = fit_ar(model, train_x, data.val, schedule, device, seed, progress)
            model.cpu()
            extra = {"steps": fit["steps"]}
        test_nll = nll_per_image(model, data.test, sizes)
        rows.append(
            {
                "size": data.size,
                "dims": data.dims,
                "n_train": len(train_x),
                "model": name,
                "free_parameters": model.num_free_parameters(),
                "train_nll": nll_per_image(model, train_x, sizes),
                "val_nll": nll_per_image(model, data.val, sizes),
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
    head = (
        "| S x S | D | train images | model | free parameters | train NLL | test NLL | "
        "test bits/dim |"
    )
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
        from ..train import Progress  # a widget live; one plain line once the sweep is over

        settings = Progress(settings, desc="sweep", unit="setting")
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
