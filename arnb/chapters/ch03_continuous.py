"""Chapter 3 recipes: continuous conditionals on data whose truth is known.

- ``ch03-inverse-sine``: the inverse-sine problem p(y | x). An MSE regressor, a mixture density
  network, a categorical over bins and an implicit-quantile network, compared with the exact
  conditional and its Bayes floor H(Y | X).
- ``ch03-two-moons``: a 2-D density p(x1) p(x2 | x1) with mixture conditionals, in both orders,
  against the product of marginals.

The notebook ``03_continuous.ipynb`` calls the same functions step by step. Every size lives in
:data:`SIZES`. No loss can become NaN or infinite: mixture weights through ``log_softmax``, log
densities in closed form, ``logsumexp`` over components, scales floored at ``min_scale``, float32
heads even under autocast, gradient clipping; and :func:`arnb.train.train` stops with an error
on the first non-finite loss, so a finished run proves there was none.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import Setup, pick
from ..data.toy import (
    Y_HIGH,
    Y_LOW,
    inverse_sine,
    inverse_sine_bayes_floor,
    inverse_sine_conditional_density,
    inverse_sine_log_prob,
    inverse_sine_quantiles,
    two_moons,
)
from ..distributions import pinball_loss
from ..models.mdn import (
    MDN,
    AutoregressiveMDN2D,
    ConditionalDensityNet,
    MDNConfig,
    MSERegressor,
    QuantileNet,
)
from ..plotting import plot_history, save_figure
from ..train import History, train
from . import recipe

NOISE_STD = 1.0  # unit-variance noise: the Bayes floor is H(Y | X) = 1.2880 nats


@dataclass(frozen=True)
class Ch03Sizes:
    n_train: int  # inverse-sine training pairs
    n_test: int  # held-out pairs for every NLL
    hidden: int  # MLP width (all inverse-sine models)
    depth: int  # MLP depth
    components: int  # mixture components
    bins: int  # categorical head
    steps: int  # MDN and bins: optimiser steps
    batch: int
    lr: float
    mse_steps: int
    quantile_steps: int
    quantile_taus: int  # taus drawn per example per step
    moons_n: int  # two-moons training points
    moons_components: int
    moons_steps: int
    time_limit: float  # seconds per fit: a safety net, the schedule normally completes


SIZES = {
    "smoke": Ch03Sizes(
        n_train=2000,
        n_test=2000,
        hidden=32,
        depth=2,
        components=5,
        bins=32,
        steps=150,
        batch=256,
        lr=3e-3,
        mse_steps=100,
        quantile_steps=100,
        quantile_taus=4,
        moons_n=2000,
        moons_components=5,
        moons_steps=100,
        time_limit=30,
    ),
    "cpu": Ch03Sizes(
        n_train=40_000,
        n_test=20_000,
        hidden=64,
        depth=2,
        components=8,
        bins=64,
        steps=5000,
        batch=512,
        lr=3e-3,
        mse_steps=2000,
        quantile_steps=4000,
        quantile_taus=8,
        moons_n=20_000,
        moons_components=8,
        moons_steps=2000,
        time_limit=180,
    ),
    "gpu": Ch03Sizes(
        n_train=200_000,
        n_test=50_000,
        hidden=128,
        depth=3,
        components=10,
        bins=128,
        steps=8000,
        batch=2048,
        lr=2e-3,
        mse_steps=2000,
        quantile_steps=8000,
        quantile_taus=16,
        moons_n=100_000,
        moons_components=10,
        moons_steps=5000,
        time_limit=25,  # per fit: 4 fits (inverse sine) or 3 (two moons) well inside 2 minutes
    ),
}

QUANTILE_LEVELS = (0.05, 0.25, 0.5, 0.75, 0.95)


# ----------------------------------------------------------------------------- data and training


def use_one_thread_on_cpu(device: torch.device | str) -> None:
    """These networks multiply 64x64 matrices: on a CPU, thread hand-offs cost more than they
    save (ten times more on a busy two-core machine), so run them on one thread."""
    if torch.device(device).type == "cpu":
        torch.set_num_threads(1)


def minibatches(*tensors: torch.Tensor, batch: int, generator: torch.Generator) -> Iterator[tuple]:
    """Random minibatches (with replacement between batches) of equally long tensors, forever."""
    n = tensors[0].shape[0]
    while True:
        idx = torch.randint(0, n, (batch,), generator=generator).to(tensors[0].device)
        yield tuple(t[idx] for t in tensors)


def _fit(model, loss_fn, batches, steps: int, desc: str, progress: bool, **kwargs) -> History:
    """:func:`arnb.train.train` with a progress bar over the minibatches that refreshes at most
    every two seconds (so an executed notebook stores a few lines, not one per step)."""
    bar = tqdm(batches, total=steps, desc=desc, mininterval=2.0, disable=not progress)
    try:
        return train(model, loss_fn, bar, steps=steps, progress=False, **kwargs)
    finally:
        bar.close()


def make_inverse_sine(sizes: Ch03Sizes, seed: int = 0, device: torch.device | str = "cpu") -> dict:
    """Train and test sets of the inverse-sine problem with unit-variance noise, on ``device``."""
    g = torch.Generator().manual_seed(seed)
    x, y = inverse_sine(sizes.n_train, NOISE_STD, generator=g)
    xt, yt = inverse_sine(sizes.n_test, NOISE_STD, generator=g)
    return {"x": x.to(device), "y": y.to(device), "x_test": xt.to(device), "y_test": yt.to(device)}


def fit_mse(
    sizes: Ch03Sizes, data: dict, seed: int = 0, progress: bool = True
) -> tuple[MSERegressor, History]:
    torch.manual_seed(seed)
    model = MSERegressor(1, sizes.hidden, sizes.depth).to(data["x"].device)
    g = torch.Generator().manual_seed(seed)
    hist = _fit(
        model,
        lambda m, b: m.loss(b[1], b[0]),
        minibatches(data["x"], data["y"], batch=sizes.batch, generator=g),
        sizes.mse_steps,
        "MSE regressor",
        progress,
        lr=sizes.lr,
        warmup=100,
        eval_fn=lambda m: {"mse": m.loss(data["y_test"], data["x_test"])},
        eval_every=max(1, sizes.mse_steps // 5),
        time_limit=sizes.time_limit,
    )
    return model, hist


def fit_density(
    sizes: Ch03Sizes, data: dict, head: str = "mixture", seed: int = 0, progress: bool = True
) -> tuple[ConditionalDensityNet, History]:
    """Train an MDN (``head="mixture"``) or a categorical over bins (``head="bins"``) by NLL."""
    torch.manual_seed(seed)
    config = MDNConfig(
        hidden=sizes.hidden,
        depth=sizes.depth,
        head=head,
        num_components=sizes.components,
        num_bins=sizes.bins,
        low=Y_LOW,
        high=Y_HIGH,
    )
    model = (MDN(config) if head == "mixture" else ConditionalDensityNet(config)).to(
        data["x"].device
    )
    g = torch.Generator().manual_seed(seed)
    hist = _fit(
        model,
        lambda m, b: m.nll(b[1], b[0]),
        minibatches(data["x"], data["y"], batch=sizes.batch, generator=g),
        sizes.steps,
        "MDN" if head == "mixture" else "bins",
        progress,
        lr=sizes.lr,
        warmup=200,
        eval_fn=lambda m: {"nll": m.nll(data["y_test"], data["x_test"])},
        eval_every=max(1, sizes.steps // 10),
        time_limit=sizes.time_limit,
    )
    return model, hist


def fit_quantile(
    sizes: Ch03Sizes, data: dict, seed: int = 0, progress: bool = True
) -> tuple[QuantileNet, History]:
    """Train an implicit quantile network with the pinball loss, fresh taus every step."""
    torch.manual_seed(seed)
    model = QuantileNet(1, sizes.hidden, sizes.depth).to(data["x"].device)
    g = torch.Generator().manual_seed(seed)
    g_tau = torch.Generator().manual_seed(seed + 1)
    taus = torch.tensor(QUANTILE_LEVELS)
    hist = _fit(
        model,
        lambda m, b: m.loss(b[1], b[0], sizes.quantile_taus, g_tau),
        minibatches(data["x"], data["y"], batch=sizes.batch, generator=g),
        sizes.quantile_steps,
        "IQN",
        progress,
        lr=sizes.lr,
        warmup=200,
        eval_fn=lambda m: {
            "quantile_loss": quantile_score(
                lambda x, t: m(x, t), data["x_test"][:5000], data["y_test"][:5000], taus
            )
        },
        eval_every=max(1, sizes.quantile_steps // 5),
        time_limit=sizes.time_limit,
    )
    return model, hist


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def quantile_score(quantile_fn, x: torch.Tensor, y: torch.Tensor, taus: torch.Tensor) -> float:
    """Mean pinball loss of ``quantile_fn(x (B, 1), tau (B, T)) -> (B, T)`` over the levels ``taus``.

    Averaged over many levels it approximates half the CRPS, a proper score for any model that
    gives quantiles, with or without a density.
    """
    tau = taus.to(x.device, torch.float32).expand(x.shape[0], -1)
    pred = quantile_fn(x, tau)
    return float(pinball_loss(pred, y.unsqueeze(1).expand_as(pred), tau).mean())


def true_quantile_fn(x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """The exact conditional quantiles of the inverse-sine problem, as a ``quantile_fn``."""
    q = inverse_sine_quantiles(x.reshape(-1).cpu().numpy(), tau[0].cpu().numpy(), NOISE_STD)
    return torch.as_tensor(q, dtype=torch.float32, device=x.device)


@torch.no_grad()
def evaluate_inverse_sine(
    data: dict,
    mse: MSERegressor,
    mdn: MDN,
    bins: ConditionalDensityNet,
    iqn: QuantileNet,
    quantile_points: int = 5000,
) -> dict:
    """Held-out NLLs (nats per example) and quantile scores of all four models and of the truth."""
    x, y, xt, yt = data["x"], data["y"], data["x_test"], data["y_test"]
    floor = inverse_sine_bayes_floor(NOISE_STD)
    oracle = float(-inverse_sine_log_prob(yt, xt, NOISE_STD).mean())
    # the regressor read as a Gaussian whose sigma is its training RMS residual (its best sigma)
    sigma = float(((mse(x) - y) ** 2).mean().sqrt())
    mse_nll = float(-mse.gaussian_log_prob(yt, xt, sigma).mean())
    mdn_nll, bins_nll = float(mdn.nll(yt, xt)), float(bins.nll(yt, xt))
    taus = torch.linspace(0.02, 0.98, 25)
    xq, yq = xt[:quantile_points], yt[:quantile_points]
    return {
        "noise_std": NOISE_STD,
        "bayes_floor_nats": floor,
        "true_model_test_nll": oracle,
        "mse_test_mse": float(mse.loss(yt, xt)),
        "mse_as_gaussian_test_nll": mse_nll,
        "mdn_test_nll": mdn_nll,
        "mdn_gap_to_floor": mdn_nll - floor,
        "mdn_excess_over_true_model": mdn_nll - oracle,
        "bins_test_nll": bins_nll,
        "bins_gap_to_floor": bins_nll - floor,
        "quantile_score_true": quantile_score(true_quantile_fn, xq, yq, taus),
        "quantile_score_iqn": quantile_score(lambda a, t: iqn(a, t), xq, yq, taus),
        "quantile_score_mdn": quantile_score(lambda a, t: mdn(a).icdf(t), xq, yq, taus),
    }


# ----------------------------------------------------------------------------- figures


@torch.no_grad()
def plot_regression(data: dict, mse: MSERegressor, mdn: MDN, ax=None, n: int = 3000):
    """Data, the MSE fit and samples of the MDN in the (x, y) plane."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    xt, yt = data["x_test"][:n].cpu(), data["y_test"][:n].cpu()
    ax.scatter(xt[:, 0], yt, s=2, alpha=0.3, color="gray", label="held-out data")
    grid = torch.linspace(-14, 14, 400, device=data["x"].device).unsqueeze(1)
    ax.plot(grid[:, 0].cpu(), mse(grid).cpu(), "r-", lw=2, label="MSE regressor")
    g = torch.Generator().manual_seed(1)
    xs = data["x_test"][:n]
    ax.scatter(
        xs[:, 0].cpu(), mdn.sample(xs, g).cpu(), s=2, alpha=0.3, color="C0", label="MDN samples"
    )
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend(markerscale=4, loc="upper left")
    return ax


@torch.no_grad()
def plot_conditionals(models: dict, x_values=(-8.0, -2.0, 0.0, 5.0), axes=None):
    """True p(y | x) against each model's density at a few x (``models``: name -> density net)."""
    if axes is None:
        _, axes = plt.subplots(1, len(x_values), figsize=(3.2 * len(x_values), 2.8), sharey=False)
    yg = np.linspace(Y_LOW - 1, Y_HIGH + 1, 1000)
    truth = inverse_sine_conditional_density(x_values, yg, NOISE_STD)
    for ax, xv, tr in zip(axes, x_values, truth):
        ax.fill_between(yg, tr, color="gray", alpha=0.35, label="true p(y|x)")
        for k, (name, m) in enumerate(models.items()):
            dev = next(m.parameters()).device
            ys = torch.tensor(yg, dtype=torch.float32, device=dev)
            inside = (
                (ys >= Y_LOW) & (ys <= Y_HIGH)
                if name.startswith("bins")
                else torch.ones_like(ys, dtype=torch.bool)
            )
            xs = torch.full((len(yg), 1), xv, device=dev)
            dens = torch.zeros_like(ys)
            dens[inside] = m.log_prob(ys[inside], xs[inside]).exp()
            ax.plot(yg, dens.cpu(), color=f"C{k}", lw=1.5, label=name)
        ax.set_title(f"x = {xv:g}")
        ax.set_xlabel("y")
    axes[0].set_ylabel("density")
    axes[0].legend(fontsize=8)
    return axes


@torch.no_grad()
def plot_quantiles(iqn: QuantileNet, data: dict, ax=None, taus=QUANTILE_LEVELS, n: int = 3000):
    """Learned quantile curves Q(tau | x) (solid) against the true ones (dashed)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    xt, yt = data["x_test"][:n].cpu(), data["y_test"][:n].cpu()
    ax.scatter(xt[:, 0], yt, s=2, alpha=0.2, color="gray")
    xg = np.linspace(-13, 13, 300)
    true_q = inverse_sine_quantiles(xg, taus, NOISE_STD)
    xs = torch.tensor(xg, dtype=torch.float32, device=data["x"].device).unsqueeze(1)
    learned = iqn(xs, torch.tensor(taus, device=xs.device).expand(len(xg), -1)).cpu()
    for j, t in enumerate(taus):
        ax.plot(xg, true_q[:, j], "--", color=f"C{j}", lw=1)
        ax.plot(xg, learned[:, j], "-", color=f"C{j}", lw=1.8, label=f"tau = {t:g}")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("IQN quantiles (solid) vs true (dashed)")
    return ax


# ----------------------------------------------------------------------------- two moons


def make_moons(sizes: Ch03Sizes, seed: int = 0, device: torch.device | str = "cpu") -> dict:
    g = torch.Generator().manual_seed(seed + 100)
    return {
        "train": two_moons(sizes.moons_n, 0.1, g).to(device),
        "test": two_moons(max(2000, sizes.moons_n // 4), 0.1, g).to(device),
    }


def fit_moons(
    sizes: Ch03Sizes,
    moons: dict,
    order=(0, 1),
    independent: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> tuple[AutoregressiveMDN2D, History]:
    torch.manual_seed(seed)
    model = AutoregressiveMDN2D(
        sizes.moons_components, sizes.hidden, sizes.depth, order=order, independent=independent
    ).to(moons["train"].device)
    g = torch.Generator().manual_seed(seed)
    name = "independent" if independent else f"order {order}"
    hist = _fit(
        model,
        lambda m, b: m.nll(b[0]),
        minibatches(moons["train"], batch=sizes.batch, generator=g),
        sizes.moons_steps,
        f"2-D MDN, {name}",
        progress,
        lr=sizes.lr,
        warmup=100,
        eval_fn=lambda m: {"nll": m.nll(moons["test"])},
        eval_every=max(1, sizes.moons_steps // 5),
        time_limit=sizes.time_limit,
    )
    return model, hist


@torch.no_grad()
def plot_moons(moons: dict, models: dict, n: int = 2000, axes=None):
    """Held-out data, then samples of each model (``models``: name -> AutoregressiveMDN2D)."""
    if axes is None:
        _, axes = plt.subplots(
            1, 1 + len(models), figsize=(3.2 * (1 + len(models)), 3), sharex=True, sharey=True
        )
    pts = moons["test"][:n].cpu()
    axes[0].scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5, color="gray")
    axes[0].set_title("data")
    g = torch.Generator().manual_seed(2)
    for ax, (name, m) in zip(axes[1:], models.items()):
        s = m.sample(n, generator=g).cpu()
        ax.scatter(s[:, 0], s[:, 1], s=2, alpha=0.5)
        ax.set_title(name, fontsize=9)
    for ax in axes:
        ax.set_xlim(-1.6, 2.6)
        ax.set_ylim(-1.1, 1.6)
        ax.set_aspect("equal")
    return axes


# ----------------------------------------------------------------------------- recipes


@recipe("ch03-inverse-sine", "MSE vs MDN vs bins vs implicit quantiles on the inverse-sine problem")
def run_inverse_sine(setup: Setup, out: Path) -> dict:
    sizes = pick(SIZES, setup.profile)
    use_one_thread_on_cpu(setup.device)
    data = make_inverse_sine(sizes, setup.seed, setup.device)
    mse, h_mse = fit_mse(sizes, data, setup.seed, progress=False)
    mdn, h_mdn = fit_density(sizes, data, "mixture", setup.seed, progress=False)
    bins, h_bins = fit_density(sizes, data, "bins", setup.seed, progress=False)
    iqn, h_iqn = fit_quantile(sizes, data, setup.seed, progress=False)
    metrics = evaluate_inverse_sine(data, mse, mdn, bins, iqn)
    metrics.update(
        {
            "mdn_steps_done": h_mdn.step[-1] + 1,
            "bins_steps_done": h_bins.step[-1] + 1,
            "iqn_steps_done": h_iqn.step[-1] + 1,
            "train_seconds": round(
                h_mse.seconds + h_mdn.seconds + h_bins.seconds + h_iqn.seconds, 1
            ),
        }
    )

    fig, ax = plt.subplots(figsize=(6, 4))
    plot_regression(data, mse, mdn, ax=ax)
    save_figure(fig, out, "inverse_sine_regression")
    plt.close(fig)
    fig, axes = plt.subplots(1, 4, figsize=(13, 2.8))
    plot_conditionals({"MDN": mdn, "bins": bins}, axes=axes)
    save_figure(fig, out, "inverse_sine_conditionals")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    plot_quantiles(iqn, data, ax=ax)
    save_figure(fig, out, "inverse_sine_quantiles")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    plot_history(h_mdn, "nll", ax=ax, label="MDN")
    plot_history(h_bins, "nll", ax=ax, label="bins")
    ax.axhline(metrics["bayes_floor_nats"], color="k", ls="--", lw=1, label="Bayes floor")
    ax.set_ylim(metrics["bayes_floor_nats"] - 0.2, metrics["bayes_floor_nats"] + 1.5)
    ax.legend()
    save_figure(fig, out, "inverse_sine_training")
    plt.close(fig)
    return metrics


@recipe(
    "ch03-two-moons",
    "2-D autoregressive MDN p(x1) p(x2|x1) on two moons vs the product of marginals",
)
def run_two_moons(setup: Setup, out: Path) -> dict:
    sizes = pick(SIZES, setup.profile)
    use_one_thread_on_cpu(setup.device)
    moons = make_moons(sizes, setup.seed, setup.device)
    variants = {
        "p(x1) p(x2|x1)": dict(order=(0, 1)),
        "p(x2) p(x1|x2)": dict(order=(1, 0)),
        "p(x1) p(x2) (independent)": dict(independent=True),
    }
    models, metrics = {}, {}
    for name, kw in variants.items():
        models[name], hist = fit_moons(sizes, moons, seed=setup.seed, progress=False, **kw)
        with torch.no_grad():
            metrics[f"test_nll[{name}]"] = float(models[name].nll(moons["test"]))
    fig, axes = plt.subplots(1, 4, figsize=(13, 3), sharex=True, sharey=True)
    plot_moons(moons, models, axes=axes)
    save_figure(fig, out, "two_moons_samples")
    plt.close(fig)
    metrics["test_points"] = len(moons["test"])
    metrics["nats_gained_by_autoregression"] = (
        metrics["test_nll[p(x1) p(x2) (independent)]"] - metrics["test_nll[p(x1) p(x2|x1)]"]
    )
    return metrics
