"""Chapter 4 recipes: an RNN-MDN on pen strokes against two baselines, and handwriting synthesis.

- ``rnn-mdn-omniglot``: LSTM-MDN vs a context-free mixture vs a unimodal Gaussian RNN (M = 1) on
  the sketch-rnn Omniglot strokes (simplified, :func:`load_omniglot`); held-out NLL per point;
  samples under bias/temperature.
- ``rnn-mdn-handwriting``: the same three on the generated Hershey handwriting.
- ``handwriting-synthesis``: the text-conditional model with the attention window; held-out NLL
  per point, written phrases and the window's alignment over time.

The notebook ``04_rnn_mdn`` calls the same functions step by step. All sizes are in :data:`SIZES`.
NLLs are in nats per point, in the *normalised* units of each data set (moves divided by the
data set's :func:`~arnb.data.stroke_batches.stroke_scale`, computed on its full training split),
so they compare across models and profiles but not across data sets.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..config import Setup, pick
from ..data import load_sketch_strokes, simplify_strokes
from ..data.handwriting import load_handwriting
from ..data.stroke_batches import StrokeBatches, prepare_strokes, stroke_scale
from ..distributions import bivariate_normal_log_prob
from ..models.handwriting_synthesis import HandwritingSynthesis, SynthesisConfig
from ..models.rnn_mdn import RNNMDN, ContextFreeMixture, RNNMDNConfig
from ..plotting import draw_strokes, plot_history
from ..train import History, Schedule, evaluate_nll, train
from . import new_figure, recipe, save_and_close


@dataclass(frozen=True)
class Ch04Run:
    """Everything chapter 4 sizes by profile (``None`` = the whole split).

    ``model`` sizes the RNN-MDN; the context-free mixture takes its ``components`` and the
    unimodal Gaussian RNN is the same config with ``components=1``. ``sigma_floor`` is in
    normalised units: about 0.05 raw Omniglot units, 0.003 font units. Each schedule's
    ``time_limit`` is a safety net (a recipe trains three models) that the comparison fits do not
    reach; the synthesis fit reaches it on a GPU, where its point-by-point loop runs hardly faster
    than on a CPU (2,095 of 3,000 steps in 270 s on an H200).
    """

    model: RNNMDNConfig
    fit: Schedule  # the RNN-MDN and the M = 1 Gaussian RNN
    baseline_fit: Schedule  # the context-free mixture: ~121 parameters, a larger step is safe
    synthesis: SynthesisConfig
    synthesis_fit: Schedule
    max_len: int  # longer drawings are dropped (train and test alike)
    train_size: int | None  # training sequences used per data set
    eval_size: int | None  # held-out sequences evaluated
    synthesis_valid_size: int  # validation drawings scored during synthesis training


# The cpu profile in full; the others change only what differs from it.
# 4000 steps of 32 are about 4 passes over Omniglot (about 70 s for the RNN-MDN on 2 cores); at
# 700 the validation NLL was still falling steeply and the samples were stroke fragments.
# A synthesis step costs about five RNN-MDN steps: 1500 of them write legible requested words.
_FIT = Schedule(steps=4000, lr=3e-3, batch_size=32, warmup=50, eval_every=800, time_limit=240)
_CPU = Ch04Run(
    model=RNNMDNConfig(hidden=128, components=20, sigma_floor=1e-3),
    fit=_FIT,
    baseline_fit=replace(_FIT, lr=3e-2, time_limit=60),
    synthesis=SynthesisConfig(hidden=128, components=20, sigma_floor=1e-3),
    synthesis_fit=replace(_FIT, steps=1500, eval_every=300, time_limit=300),
    max_len=100,
    train_size=None,
    eval_size=None,
    synthesis_valid_size=200,
)
_SMOKE_FIT = replace(_FIT, steps=4, batch_size=8, warmup=1, eval_every=1, time_limit=60)
_GPU_FIT = replace(_FIT, steps=3000, lr=2e-3, batch_size=128, eval_every=600, time_limit=130)

SIZES = {
    "smoke": replace(
        _CPU,
        model=replace(_CPU.model, hidden=16, components=3),
        fit=_SMOKE_FIT,
        baseline_fit=replace(_SMOKE_FIT, lr=3e-2, time_limit=15),
        synthesis=replace(_CPU.synthesis, hidden=16, components=3),
        synthesis_fit=replace(_SMOKE_FIT, steps=3, batch_size=4),
        train_size=64,
        eval_size=32,
    ),
    "cpu": _CPU,
    "gpu": replace(
        _CPU,
        model=replace(_CPU.model, hidden=256),
        fit=_GPU_FIT,
        baseline_fit=replace(_GPU_FIT, lr=2e-2, time_limit=32.5),
        synthesis=replace(_CPU.synthesis, hidden=256),
        synthesis_fit=replace(_GPU_FIT, batch_size=64, time_limit=270),
    ),
}

DATASETS = ("omniglot", "handwriting")
DEQUANTIZE = {"omniglot": 1.0, "handwriting": 0.0}  # Omniglot coordinates are integers
# Omniglot's strokes are pixel paths: a slanted line is a staircase of short horizontal and
# vertical moves, and a model trained on them draws staircases. Each stroke is simplified to
# within 6 raw units (the most common move length inside a stroke; 12 is the second): the
# shapes stay, the stairs go. The generated handwriting is smooth and is not simplified.
OMNIGLOT_SIMPLIFY = 6.0


def load_omniglot(split: str) -> list[np.ndarray]:
    """Omniglot's drawings of ``split`` in raw units, each stroke simplified to within
    ``OMNIGLOT_SIMPLIFY`` (:func:`arnb.data.simplify_strokes`)."""
    return [simplify_strokes(d, OMNIGLOT_SIMPLIFY) for d in load_sketch_strokes("omniglot", split)]


def load_stroke_data(name: str, run: Ch04Run, seed: int = 0) -> dict:
    """Normalised train / valid / test stroke lists of ``name`` (plus texts for handwriting).

    Returns ``{"name", "scale", "train", "valid", "test", "texts_train", ...}``. The scale does
    not depend on the profile: all of Omniglot's training split, the first 1000 generated
    training words for handwriting.
    """
    splits = {"train": run.train_size, "valid": run.eval_size, "test": run.eval_size}
    if name == "omniglot":
        raw = {s: load_omniglot(s) for s in splits}
        texts = {s: None for s in splits}
        scale = stroke_scale(raw["train"])
    elif name == "handwriting":
        raw, texts = {}, {}
        for s, limit in splits.items():  # generated: make only what is used
            raw[s], texts[s] = load_handwriting(s, limit)
        scale = stroke_scale(load_handwriting("train", 1000)[0])
    else:
        raise ValueError(f"unknown stroke data set {name!r}; have {DATASETS}")
    out = {"name": name, "scale": scale}
    for k, (split, limit) in enumerate(splits.items()):
        keep = [i for i, s in enumerate(raw[split]) if len(s) <= run.max_len][:limit]
        out[split] = prepare_strokes(
            [raw[split][i] for i in keep],
            scale,
            run.max_len,
            dequantize=DEQUANTIZE[name],
            seed=seed * 10 + k,
        )
        out[f"texts_{split}"] = None if texts[split] is None else [texts[split][i] for i in keep]
    return out


def stroke_nll(
    model, seqs: list[np.ndarray], texts: list[str] | None = None, batch_size: int = 256
) -> float:
    """Exact mean NLL per point (nats) of ``model`` over every point of ``seqs``."""
    batches = StrokeBatches(seqs, batch_size, texts=texts).in_order()
    return evaluate_nll(model, batches)["nats_per_dim"]


def make_models(run: Ch04Run, seed: int = 0) -> dict[str, torch.nn.Module]:
    """The chapter's three models, freshly initialised from ``seed``: the RNN-MDN and its two
    baselines."""
    torch.manual_seed(seed)
    return {
        "context-free mixture": ContextFreeMixture(run.model),
        "Gaussian RNN (M=1)": RNNMDN(replace(run.model, components=1)),
        f"RNN-MDN (M={run.model.components})": RNNMDN(run.model),
    }


def _stroke_loss(model, batch) -> torch.Tensor:
    x, cond = batch
    return model.nll(x, **cond)


def fit_stroke_model(
    model, data: dict, run: Ch04Run, device, seed: int = 0, progress: bool = True
) -> History:
    """Train one unconditional stroke model on ``data["train"]``, evaluating on
    ``data["valid"]``."""
    model.to(device)
    torch.manual_seed(seed)
    schedule = run.baseline_fit if isinstance(model, ContextFreeMixture) else run.fit
    return train(
        model,
        _stroke_loss,
        StrokeBatches(data["train"], schedule.batch_size, seed=seed),
        schedule,
        eval_fn=lambda m: {"valid_nll": stroke_nll(m, data["valid"])},
        progress=progress,
        desc=type(model).__name__,
    )


def compare_models(data: dict, run: Ch04Run, device, seed: int = 0, progress: bool = True) -> dict:
    """Train the three models on one data set: ``{name: {"model", "history", "test_nll",
    "params"}}``."""
    results = {}
    for name, model in make_models(run, seed).items():
        hist = fit_stroke_model(model, data, run, device, seed=seed, progress=progress)
        results[name] = {
            "model": model,
            "history": hist,
            "test_nll": stroke_nll(model, data["test"]),
            "params": model.num_parameters(),
        }
    return results


SAMPLE_SETTINGS = (
    {"bias": 0.0, "temperature": 1.0},
    {"bias": 0.0, "temperature": 0.5},
    {"bias": 0.0, "temperature": 0.1},
    {"bias": 1.0, "temperature": 1.0},
    {"bias": 3.0, "temperature": 1.0},
)


def setting_label(setting: dict) -> str:
    return f"b={setting['bias']:g}, τ={setting['temperature']:g}"


def sample_grid(model, settings=SAMPLE_SETTINGS, n: int = 6, length: int = 30, seed: int = 0):
    """A figure: one row of ``n`` drawings per bias/temperature setting (same seed on every row)."""
    fig, axes = plt.subplots(
        len(settings), n, figsize=(1.5 * n, 1.5 * len(settings)), squeeze=False
    )
    for row, setting in zip(axes, settings):
        g = torch.Generator().manual_seed(seed)
        drawings = model.sample(n, generator=g, length=length, **setting).cpu()
        for ax, d in zip(row, drawings):
            draw_strokes(d, ax, lw=1.0)
        row[0].text(
            -0.1,
            0.5,
            setting_label(setting),
            transform=row[0].transAxes,
            ha="right",
            va="center",
            fontsize=9,
        )
    fig.subplots_adjust(left=0.15, wspace=0.05, hspace=0.05)
    return fig


def loss_figure(results: dict, title: str):
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    for name, r in results.items():
        h = r["history"]
        ax.plot(h.eval_step, [e["valid_nll"] for e in h.eval], "o-", label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("validation NLL (nats / point)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


@torch.no_grad()
def next_point_figure(model, seq: np.ndarray, num: int = 4, res: int = 121):
    """A figure: a drawing so far and the model's density of the next pen position, at ``num``
    steps.

    The log density of the move ``(dx, dy)`` (from
    :func:`~arnb.distributions.bivariate_normal_log_prob`) is shaded over its top 8 nats around
    the current pen position (black cross); the red dot is where the drawing actually went
    next. The title gives the step and the probability that the pen lifts after it.
    """
    x = torch.as_tensor(np.asarray(seq, dtype=np.float32))
    steps = np.linspace(3, len(x) - 1, num).round().astype(int) if len(x) > 4 else [len(x) - 1]
    with torch.no_grad():
        params = model.conditionals(x[None].to(model.device, model.dtype))
    params = params.map(lambda v: v[0].float().cpu())
    pos = x[:, :2].cumsum(0)
    fig, axes = plt.subplots(1, len(steps), figsize=(2.6 * len(steps), 2.6), squeeze=False)
    for ax, t in zip(axes[0], steps):
        half = max(1.5, 1.3 * float(x[t, :2].abs().max()))
        grid = torch.linspace(-half, half, res)
        gx, gy = torch.meshgrid(grid, grid, indexing="xy")
        p = params.map(lambda v, t=t: v[t])
        log_pi = torch.log_softmax(p.logit_pi, -1)
        moves = torch.stack([gx, gy], -1).reshape(-1, 2)
        logd = torch.logsumexp(log_pi + bivariate_normal_log_prob(moves, p.mu, p.sigma, p.rho), -1)
        here = pos[t - 1]
        # log density, shaded over the top 8 nats: the peaks are far too sharp to show linearly
        logd = logd.reshape(res, res).numpy()
        ax.contourf(
            (here[0] + gx).numpy(),
            -(here[1] + gy).numpy(),
            logd,
            levels=np.linspace(logd.max() - 8, logd.max(), 9),
            cmap="Blues",
        )
        draw_strokes(x[:t], ax, color="0.55", lw=1.2)
        ax.plot(here[0], -here[1], "x", color="black", ms=6)
        ax.plot(pos[t, 0], -pos[t, 1], "o", color="red", ms=4)
        ax.set_title(f"t={t}, P(lift after)={float(torch.sigmoid(p.pen_logit)):.2f}", fontsize=8)
    return fig


def median_length(seqs) -> int:
    """The median number of points of the drawings ``seqs`` (the samplers' length)."""
    return int(np.median([len(s) for s in seqs]))


def _run_dataset(name: str, setup: Setup, out: Path) -> dict:
    run = pick(SIZES, setup.profile)
    data = load_stroke_data(name, run, seed=setup.seed)
    results = compare_models(data, run, setup.device, seed=setup.seed, progress=False)
    fig = loss_figure(results, name)
    save_and_close(fig, out, f"{name}_valid_nll")
    best = results[f"RNN-MDN (M={run.model.components})"]["model"]
    fig = sample_grid(best, length=median_length(data["train"]), seed=setup.seed)
    save_and_close(fig, out, f"{name}_samples_bias_temperature")
    fig = next_point_figure(best, data["test"][0])
    save_and_close(fig, out, f"{name}_next_point_density")
    metrics = {
        "scale": data["scale"],
        "train_sequences": len(data["train"]),
        "test_sequences": len(data["test"]),
        "test_points": int(sum(len(s) for s in data["test"])),
    }
    for model_name, r in results.items():
        key = model_name.split(" (")[0].replace(" ", "_").replace("-", "_").lower()
        key = {"rnn_mdn": "rnn_mdn", "gaussian_rnn": "gaussian_rnn_m1"}.get(key, key)
        metrics[f"{key}_test_nll_per_point"] = r["test_nll"]
        metrics[f"{key}_params"] = r["params"]
        metrics[f"{key}_steps"] = r["history"].eval_step[-1] if r["history"].eval_step else 0
        metrics[f"{key}_train_seconds"] = round(r["history"].seconds, 1)
    return metrics


@recipe(
    "rnn-mdn-omniglot", "LSTM-MDN vs context-free mixture vs M=1 Gaussian RNN on Omniglot strokes"
)
def rnn_mdn_omniglot(setup: Setup, out: Path) -> dict:
    return _run_dataset("omniglot", setup, out)


@recipe(
    "rnn-mdn-handwriting",
    "LSTM-MDN vs context-free mixture vs M=1 Gaussian RNN on Hershey handwriting",
)
def rnn_mdn_handwriting(setup: Setup, out: Path) -> dict:
    return _run_dataset("handwriting", setup, out)


# --- handwriting synthesis ------------------------------------------------------------------------


def make_synthesis(run: Ch04Run, seed: int = 0) -> HandwritingSynthesis:
    """The synthesis model, freshly initialised from ``seed``."""
    torch.manual_seed(seed)
    return HandwritingSynthesis(run.synthesis)


def fit_synthesis(
    model: HandwritingSynthesis,
    data: dict,
    run: Ch04Run,
    device,
    seed: int = 0,
    progress: bool = True,
) -> History:
    """Train the synthesis model on ``data`` (from ``load_stroke_data("handwriting", ...)``)."""
    model.to(device)
    torch.manual_seed(seed)
    schedule = run.synthesis_fit
    batches = StrokeBatches(
        data["train"], schedule.batch_size, seed=seed, texts=data["texts_train"]
    )
    k = run.synthesis_valid_size
    valid = (data["valid"][:k], data["texts_valid"][:k])
    return train(
        model,
        _stroke_loss,
        batches,
        schedule,
        eval_fn=lambda m: {"valid_nll": stroke_nll(m, *valid)},
        progress=progress,
        desc="synthesis",
    )


PHRASES = ("hello", "quiz", "zebra", "waving")  # of these only quiz is a training word


def writing_figure(
    model: HandwritingSynthesis, phrases=PHRASES, biases=(0.0, 1.0, 3.0), seed: int = 0
):
    """A figure: each phrase written once per bias (rows: bias, columns: phrase)."""
    fig, axes = plt.subplots(
        len(biases), len(phrases), figsize=(2.6 * len(phrases), 1.2 * len(biases)), squeeze=False
    )
    for row, b in zip(axes, biases):
        for ax, text in zip(row, phrases):
            g = torch.Generator().manual_seed(seed)
            x, lengths, _ = model.sample_with_attention(1, text=text, generator=g, bias=b)
            draw_strokes(x[0, : max(1, int(lengths[0]))].cpu(), ax, lw=1.0)
        row[0].text(-0.05, 0.5, f"b={b:g}", transform=row[0].transAxes, ha="right", va="center")
    for ax, text in zip(axes[0], phrases):
        ax.set_title(repr(text), fontsize=9)
    return fig


def attention_figure(
    model: HandwritingSynthesis, text: str = "waving", bias: float = 1.0, seed: int = 0
):
    """A figure: the drawing and, below it, the window weights phi(t, u) over time t and
    characters u."""
    g = torch.Generator().manual_seed(seed)
    x, lengths, phi = model.sample_with_attention(1, text=text, generator=g, bias=bias)
    n = max(1, int(lengths[0]))
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(7, 4.5), gridspec_kw={"height_ratios": [1, 1.4]}
    )
    draw_strokes(x[0, :n].cpu(), top)
    top.set_title(f"written: {text!r} (bias {bias:g})")
    bottom.imshow(
        phi[0, :n, : len(text)].T.numpy(),
        aspect="auto",
        origin="lower",
        cmap="viridis",
        interpolation="nearest",
    )
    bottom.set_yticks(range(len(text)), [c if c != " " else "␣" for c in text])
    bottom.set_xlabel("pen point t")
    bottom.set_ylabel("character u")
    bottom.set_title("window weights φ(t, u)")
    fig.tight_layout()
    return fig


@recipe(
    "handwriting-synthesis",
    "text-conditional RNN-MDN with a soft attention window (Graves 2013, sec. 5)",
)
def handwriting_synthesis(setup: Setup, out: Path) -> dict:
    run = pick(SIZES, setup.profile)
    data = load_stroke_data("handwriting", run, seed=setup.seed)
    model = make_synthesis(run, setup.seed)
    hist = fit_synthesis(model, data, run, setup.device, seed=setup.seed, progress=False)
    with new_figure(out, "synthesis_loss", figsize=(5, 3)) as (_, ax):
        plot_history(hist, "valid_nll", ax=ax, ylabel="NLL (nats / point)")
    for name, fig in (
        ("synthesis_writing", writing_figure(model, seed=setup.seed)),
        ("synthesis_attention", attention_figure(model, seed=setup.seed)),
    ):
        save_and_close(fig, out, name)
    return {
        "synthesis_test_nll_per_point": stroke_nll(model, data["test"], data["texts_test"]),
        "synthesis_params": model.num_parameters(),
        "synthesis_steps": hist.eval_step[-1],
        "synthesis_train_seconds": round(hist.seconds, 1),
        "scale": data["scale"],
    }
