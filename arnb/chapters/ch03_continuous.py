"""Chapter 3 recipes: continuous conditionals on data whose truth is known.

- ``ch03-inverse-sine``: the inverse-sine problem p(y | x). An MSE regressor, a mixture density
  network, a categorical over bins and an implicit-quantile network, compared with the exact
  conditional and its Bayes floor H(Y | X).
- ``ch03-two-moons``: a 2-D density p(x1) p(x2 | x1) with mixture conditionals, in both orders,
  against the product of marginals, and an autoregressive implicit quantile network (AIQN) that
  samples the same data without any density.

The notebook ``03_continuous.ipynb`` calls the same functions step by step. Every size lives in
:data:`SIZES`: the models' own configs and one :class:`~arnb.train.Schedule` per fit. No loss
can become NaN or infinite: mixture weights through ``log_softmax``, log densities in closed
form, ``logsumexp`` over components, scales floored at ``min_scale``, full-precision heads even
under autocast, gradient clipping; and :func:`arnb.train.train` stops with an error on the first
non-finite loss, so a finished run proves there was none.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..config import Setup, pick
from ..data import toy
from ..data.batches import Minibatches
from ..data.toy import Y_HIGH, Y_LOW
from ..distributions import pinball_loss
from ..models import AIQN, MDN, AutoregressiveMDN2D, MSERegressor, QuantileNet
from ..models.aiqn import AIQNConfig
from ..models.mdn import ConditionalDensityNet, MDN2DConfig, MDNConfig, QuantileConfig
from ..plotting import plot_history
from ..train import History, Schedule, train
from . import new_figure, recipe

NOISE_STD = 1.0  # unit-variance noise: the Bayes floor is H(Y | X) = 1.2880 nats


@dataclass(frozen=True)
class Ch03Run:
    """Everything chapter 3 sizes by profile.

    ``mdn`` sizes the MDN; the categorical over bins is the same config with ``head="bins"``,
    and the MSE regressor uses its MLP (``in_features``, ``hidden``, ``depth``). These networks
    multiply 64x64 matrices: on a CPU, thread hand-offs cost more than they save (ten times more
    on a busy two-core machine), so every schedule trains on one thread (``threads=1``).
    """

    n_train: int  # inverse-sine training pairs
    n_test: int  # held-out pairs for every NLL
    mdn: MDNConfig
    quantile: QuantileConfig
    moons_n: int  # two-moons training points
    moons: MDN2DConfig
    aiqn: AIQNConfig  # the autoregressive quantile network on two moons
    density_fit: Schedule  # the MDN and the bins
    mse_fit: Schedule
    quantile_fit: Schedule
    moons_fit: Schedule
    aiqn_fit: Schedule
    quantile_eval_points: int  # held-out pairs of the quantile scores (icdf by bisection is slow)


def _nets(hidden: int, depth: int, components: int, bins: int, taus: int) -> dict:
    """The three networks of a profile, all of one MLP size (``hidden`` wide, ``depth`` deep)."""
    return dict(
        mdn=MDNConfig(
            hidden=hidden,
            depth=depth,
            num_components=components,
            num_bins=bins,
            low=Y_LOW,
            high=Y_HIGH,
        ),
        quantile=QuantileConfig(hidden=hidden, depth=depth, num_taus=taus),
        moons=MDN2DConfig(num_components=components, hidden=hidden, depth=depth),
        aiqn=AIQNConfig(dims=2, hidden=hidden, depth=depth, num_taus=taus),
    )


def _fits(density: int, mse: int, quantile: int, moons: int, **kw) -> dict:
    """The five schedules of a profile from their step counts; ``kw`` is common to all five
    (the AIQN on two moons trains as long as the 2-D MDNs).

    Warm-ups and the number of evaluations are the same in every profile.
    """

    def fit(steps: int, warmup: int, evals: int) -> Schedule:
        return Schedule(
            steps=steps, warmup=warmup, eval_every=max(1, steps // evals), threads=1, **kw
        )

    return dict(
        density_fit=fit(density, 200, 10),
        mse_fit=fit(mse, 100, 5),
        quantile_fit=fit(quantile, 200, 5),
        moons_fit=fit(moons, 100, 5),
        aiqn_fit=fit(moons, 100, 5),
    )


SIZES = {
    "smoke": Ch03Run(
        n_train=2000,
        n_test=2000,
        moons_n=2000,
        quantile_eval_points=2000,
        **_nets(hidden=32, depth=2, components=5, bins=32, taus=4),
        **_fits(150, 100, 100, 100, lr=3e-3, batch_size=256, time_limit=30),
    ),
    "cpu": Ch03Run(
        n_train=40_000,
        n_test=20_000,
        moons_n=20_000,
        quantile_eval_points=5000,
        **_nets(hidden=64, depth=2, components=8, bins=64, taus=8),
        **_fits(5000, 2000, 4000, 2000, lr=3e-3, batch_size=512, time_limit=180),
    ),
    "gpu": Ch03Run(
        n_train=200_000,
        n_test=50_000,
        moons_n=100_000,
        quantile_eval_points=5000,
        **_nets(hidden=128, depth=3, components=10, bins=128, taus=16),
        # time limits per fit: 4 fits (inverse sine) or 3 (two moons) well inside 2 minutes
        **_fits(8000, 2000, 8000, 5000, lr=2e-3, batch_size=2048, time_limit=25),
    ),
}

QUANTILE_LEVELS = (0.05, 0.25, 0.5, 0.75, 0.95)


# ----------------------------------------------------------------------------- data and training


def make_inverse_sine(run: Ch03Run, seed: int = 0, device: torch.device | str = "cpu") -> dict:
    """Train and test sets of the inverse-sine problem with unit-variance noise, on ``device``."""
    g = torch.Generator().manual_seed(seed)
    x, y = toy.inverse_sine(run.n_train, NOISE_STD, generator=g)
    xt, yt = toy.inverse_sine(run.n_test, NOISE_STD, generator=g)
    return {"x": x.to(device), "y": y.to(device), "x_test": xt.to(device), "y_test": yt.to(device)}


def _pairs(data: dict, schedule: Schedule, seed: int) -> Minibatches:
    return Minibatches(data["x"], data["y"], batch_size=schedule.batch_size, seed=seed)


def _fit_by(
    model, loss: str, data: dict, schedule: Schedule, seed: int, progress: bool, desc: str
) -> History:
    """Train by ``model.<loss>(y, context=x)`` (``"mse"`` or ``"nll"``) and evaluate the same
    loss on the test pairs."""

    def loss_of(m, x, y):
        return getattr(m, loss)(y, context=x)

    return train(
        model,
        lambda m, b: loss_of(m, b[0], b[1]),
        _pairs(data, schedule, seed),
        schedule,
        eval_fn=lambda m: {loss: loss_of(m, data["x_test"], data["y_test"])},
        progress=progress,
        desc=desc,
    )


def fit_mse(
    run: Ch03Run, data: dict, seed: int = 0, progress: bool = True
) -> tuple[MSERegressor, History]:
    torch.manual_seed(seed)
    model = MSERegressor(run.mdn).to(data["x"].device)
    hist = _fit_by(model, "mse", data, run.mse_fit, seed, progress, desc="MSE regressor")
    return model, hist


def fit_density(
    run: Ch03Run, data: dict, head: str = "mixture", seed: int = 0, progress: bool = True
) -> tuple[ConditionalDensityNet, History]:
    """Train an MDN (``head="mixture"``) or a categorical over bins (``head="bins"``) by NLL."""
    torch.manual_seed(seed)
    config = replace(run.mdn, head=head)
    model = (MDN(config) if head == "mixture" else ConditionalDensityNet(config)).to(
        data["x"].device
    )
    desc = "MDN" if head == "mixture" else "bins"
    hist = _fit_by(model, "nll", data, run.density_fit, seed, progress, desc=desc)
    return model, hist


def fit_quantile(
    run: Ch03Run, data: dict, seed: int = 0, progress: bool = True
) -> tuple[QuantileNet, History]:
    """Train an implicit quantile network with the pinball loss, fresh taus every step."""
    torch.manual_seed(seed)
    model = QuantileNet(run.quantile).to(data["x"].device)
    g_tau = torch.Generator().manual_seed(seed + 1)
    taus = torch.tensor(QUANTILE_LEVELS)
    k = run.quantile_eval_points
    hist = train(
        model,
        lambda m, b: m.quantile_loss(b[1], context=b[0], generator=g_tau),
        _pairs(data, run.quantile_fit, seed),
        run.quantile_fit,
        eval_fn=lambda m: {
            "quantile_loss": quantile_score(
                lambda x, t: m(x, t), data["x_test"][:k], data["y_test"][:k], taus
            )
        },
        progress=progress,
        desc="IQN",
    )
    return model, hist


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def quantile_score(quantile_fn, x: torch.Tensor, y: torch.Tensor, taus: torch.Tensor) -> float:
    """Mean pinball loss of ``quantile_fn(x (B, 1), tau (B, T)) -> (B, T)`` over the levels
    ``taus``.

    Averaged over many levels it approximates half the CRPS, a proper score for any model that
    gives quantiles, with or without a density.
    """
    tau = taus.to(x.device, torch.float32).expand(x.shape[0], -1)
    pred = quantile_fn(x, tau)
    return float(pinball_loss(pred, y.unsqueeze(1).expand_as(pred), tau).mean())


def true_quantile_fn(x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """The exact conditional quantiles of the inverse-sine problem, as a ``quantile_fn``."""
    q = toy.inverse_sine_quantiles(x.reshape(-1).cpu().numpy(), tau[0].cpu().numpy(), NOISE_STD)
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
    floor = toy.inverse_sine_bayes_floor(NOISE_STD)
    oracle = float(-toy.inverse_sine_log_prob(yt, xt, NOISE_STD).mean())
    # the regressor read as a Gaussian whose sigma is its training RMS residual (its best sigma)
    sigma = float(mse.mse(y, context=x).sqrt())
    mse_nll = float(-mse.gaussian_log_prob(yt, context=xt, sigma=sigma).mean())
    mdn_nll, bins_nll = float(mdn.nll(yt, context=xt)), float(bins.nll(yt, context=xt))
    taus = torch.linspace(0.02, 0.98, 25)
    xq, yq = xt[:quantile_points], yt[:quantile_points]
    return {
        "noise_std": NOISE_STD,
        "bayes_floor_nats": floor,
        "true_model_test_nll": oracle,
        "mse_test_mse": float(mse.mse(yt, context=xt)),
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
    ys = mdn.sample(len(xs), context=xs, generator=g).cpu()
    ax.scatter(xs[:, 0].cpu(), ys, s=2, alpha=0.3, color="C0", label="MDN samples")
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
    truth = toy.inverse_sine_conditional_density(x_values, yg, NOISE_STD)
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
            dens[inside] = m.log_prob(ys[inside], context=xs[inside]).exp()
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
    true_q = toy.inverse_sine_quantiles(xg, taus, NOISE_STD)
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


def make_moons(run: Ch03Run, seed: int = 0, device: torch.device | str = "cpu") -> dict:
    g = torch.Generator().manual_seed(seed + 100)
    return {
        "train": toy.two_moons(run.moons_n, 0.1, g).to(device),
        "test": toy.two_moons(max(2000, run.moons_n // 4), 0.1, g).to(device),
    }


def moons_nll(model: AutoregressiveMDN2D, points: torch.Tensor) -> float:
    """Mean NLL per 2-D point in nats (``model.nll`` is per coordinate, half of it)."""
    return float(-model.log_prob(points).mean())


def fit_moons(
    run: Ch03Run,
    moons: dict,
    order=(0, 1),
    independent: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> tuple[AutoregressiveMDN2D, History]:
    torch.manual_seed(seed)
    config = replace(run.moons, order=order, independent=independent)
    model = AutoregressiveMDN2D(config).to(moons["train"].device)
    name = "independent" if independent else f"order {order}"
    hist = train(
        model,
        lambda m, b: m.nll(b),
        Minibatches(moons["train"], batch_size=run.moons_fit.batch_size, seed=seed),
        run.moons_fit,
        eval_fn=lambda m: {"nll": moons_nll(m, moons["test"])},
        progress=progress,
        desc=f"2-D MDN, {name}",
    )
    return model, hist


def fit_aiqn(
    run: Ch03Run, moons: dict, seed: int = 0, progress: bool = True
) -> tuple[AIQN, History]:
    """Train the AIQN on two moons with the pinball loss, fresh taus every step; the held-out
    score is the same loss on the test points (with its own seeded taus)."""
    torch.manual_seed(seed)
    model = AIQN(run.aiqn).to(moons["train"].device)
    g_tau = torch.Generator().manual_seed(seed + 1)

    def held_out(m):
        g = torch.Generator().manual_seed(seed + 2)  # the same taus at every evaluation
        return {"quantile_loss": m.quantile_loss(moons["test"], generator=g)}

    hist = train(
        model,
        lambda m, b: m.quantile_loss(b, generator=g_tau),
        Minibatches(moons["train"], batch_size=run.aiqn_fit.batch_size, seed=seed),
        run.aiqn_fit,
        eval_fn=held_out,
        progress=progress,
        desc="AIQN",
    )
    return model, hist


MOONS_BOX = ((-1.6, 2.6), (-1.1, 1.6))  # the plotted window, also the histograms' range


def histogram_tv(a: torch.Tensor, b: torch.Tensor, bins: int = 15, box=MOONS_BOX) -> float:
    """Total variation distance between the 2-D histograms of point sets ``a`` and ``b``
    ``(N, 2)``: half the summed absolute difference of the cell frequencies, in [0, 1].

    ``bins`` x ``bins`` equal cells over ``box``, plus one cell for everything outside it. It
    scores samplers that have no density (the AIQN) and density models alike; two samples of
    the same distribution still differ by a sampling error that shrinks with their sizes.
    """

    def freqs(pts: torch.Tensor) -> torch.Tensor:
        pts = pts.detach().double().cpu()
        cells = torch.zeros(len(pts), dtype=torch.long)
        inside = torch.ones(len(pts), dtype=torch.bool)
        for k, (lo, hi) in enumerate(box):
            i = ((pts[:, k] - lo) / (hi - lo) * bins).floor().long()
            inside &= (i >= 0) & (i < bins)
            cells = cells * bins + i.clamp(0, bins - 1)
        cells[~inside] = bins**2
        return torch.bincount(cells, minlength=bins**2 + 1).double() / len(pts)

    return 0.5 * float((freqs(a) - freqs(b)).abs().sum())


@torch.no_grad()
def plot_moons(moons: dict, models: dict, n: int = 2000, axes=None):
    """Held-out data, then samples of each model (``models``: name -> a model with
    ``sample(n, generator=)``: an AutoregressiveMDN2D or an AIQN)."""
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
        ax.set_xlim(*MOONS_BOX[0])
        ax.set_ylim(*MOONS_BOX[1])
        ax.set_aspect("equal")
    return axes


# ----------------------------------------------------------------------------- recipes


@recipe("ch03-inverse-sine", "MSE vs MDN vs bins vs implicit quantiles on the inverse-sine problem")
def run_inverse_sine(setup: Setup, out: Path) -> dict:
    run = pick(SIZES, setup.profile)
    data = make_inverse_sine(run, setup.seed, setup.device)
    mse, h_mse = fit_mse(run, data, setup.seed, progress=False)
    mdn, h_mdn = fit_density(run, data, "mixture", setup.seed, progress=False)
    bins, h_bins = fit_density(run, data, "bins", setup.seed, progress=False)
    iqn, h_iqn = fit_quantile(run, data, setup.seed, progress=False)
    metrics = evaluate_inverse_sine(data, mse, mdn, bins, iqn, run.quantile_eval_points)
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

    with new_figure(out, "inverse_sine_regression", figsize=(6, 4)) as (_, ax):
        plot_regression(data, mse, mdn, ax=ax)
    with new_figure(out, "inverse_sine_conditionals", 1, 4, figsize=(13, 2.8)) as (_, axes):
        plot_conditionals({"MDN": mdn, "bins": bins}, axes=axes)
    with new_figure(out, "inverse_sine_quantiles", figsize=(6, 4)) as (_, ax):
        plot_quantiles(iqn, data, ax=ax)
    with new_figure(out, "inverse_sine_training", figsize=(6, 3.5)) as (_, ax):
        plot_history(h_mdn, "nll", ax=ax, label="MDN")
        plot_history(h_bins, "nll", ax=ax, label="bins")
        ax.axhline(metrics["bayes_floor_nats"], color="k", ls="--", lw=1, label="Bayes floor")
        ax.set_ylim(metrics["bayes_floor_nats"] - 0.2, metrics["bayes_floor_nats"] + 1.5)
        ax.legend()
    return metrics


@recipe(
    "ch03-two-moons",
    "2-D autoregressive MDN p(x1) p(x2|x1) on two moons vs the product of marginals and an AIQN",
)
def run_two_moons(setup: Setup, out: Path) -> dict:
    run = pick(SIZES, setup.profile)
    moons = make_moons(run, setup.seed, setup.device)
    variants = {
        "p(x1) p(x2|x1)": dict(order=(0, 1)),
        "p(x2) p(x1|x2)": dict(order=(1, 0)),
        "p(x1) p(x2) (independent)": dict(independent=True),
    }
    models, metrics = {}, {}
    for name, kw in variants.items():
        models[name], hist = fit_moons(run, moons, seed=setup.seed, progress=False, **kw)
        with torch.no_grad():
            metrics[f"test_nll[{name}]"] = moons_nll(models[name], moons["test"])
    models["AIQN (no density)"], _ = fit_aiqn(run, moons, seed=setup.seed, progress=False)
    with new_figure(out, "two_moons_samples", 1, 5, figsize=(16, 3), sharex=True, sharey=True) as (
        _,
        axes,
    ):
        plot_moons(moons, models, axes=axes)
    test = moons["test"]
    for name, m in models.items():
        drawn = m.sample(len(test), generator=torch.Generator().manual_seed(setup.seed + 3))
        metrics[f"sample_tv[{name}]"] = histogram_tv(drawn, test)
    metrics["sample_tv[train data]"] = histogram_tv(moons["train"][: len(test)], test)
    metrics["test_points"] = len(test)
    metrics["nats_gained_by_autoregression"] = (
        metrics["test_nll[p(x1) p(x2) (independent)]"] - metrics["test_nll[p(x1) p(x2|x1)]"]
    )
    return metrics
