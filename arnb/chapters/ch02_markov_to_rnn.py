"""Chapter 2: from Markov chains to HMMs to RNNs on the characters of Tiny Shakespeare.

Every model is scored on the same validation text (the last 10% of the characters) in nats per
character, each character conditioned on everything before it that the model can use. The
notebook ``02_markov_to_rnn`` calls these functions step by step; the recipes run them in one go::

    python -m arnb run ch02-ngram --profile cpu          # tuned Kneser-Ney, seconds
    python -m arnb run ch02-markov-to-rnn --profile gpu  # the chapter table (about 5 minutes)

All sizes live in :data:`SIZES`.
"""

from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from ..config import Setup, pick
from ..data import load_shakespeare_split
from ..metrics import nats_to_bits
from ..models.hmm import HMM, HMMConfig
from ..models.ngram import NGramLM, count_distinct, tune_kneser_ney, unseen_fraction
from ..models.rnn_lm import CharRNN, RNNConfig, StreamBatches, TBPTTLoss
from ..plotting import save_figure
from ..tokenizers import CharTokenizer
from ..train import autocast, train
from . import recipe


@dataclass
class NetSizes:
    """One trained model (an HMM or an RNN): its size and its training schedule."""

    name: str
    kind: str  # "hmm", "rnn", "gru" or "lstm"
    states: int = 0  # HMM states
    embed: int = 64
    hidden: int = 256
    layers: int = 1
    dropout: float = 0.0
    batch: int = 32  # parallel streams
    chunk: int = 64  # truncated-BPTT length
    lr: float = 3e-3
    steps: int = 300  # fixed schedule (reproducible) unless budget_s is set
    budget_s: float | None = None  # GPU: size the schedule to this many seconds of training


@dataclass
class Ch02Sizes:
    train_chars: int | None  # None: the whole training split
    val_chars: int | None  # None: the whole validation split
    prefix_lengths: tuple[int, ...]
    orders: tuple[int, ...]  # n-gram orders for the per-order curve
    tune_orders: tuple[int, ...]  # orders tried when tuning Kneser-Ney on held-out training text
    tune_scales: tuple[float, ...]
    nets: list[NetSizes] = field(default_factory=list)
    eval_chars: int = 20_000  # validation characters scored during training (the curve only)
    sample_chars: int = 300


# fmt: off
SIZES = {
    "smoke": Ch02Sizes(
        train_chars=60_000, val_chars=5_000, prefix_lengths=(1, 2, 3, 4), orders=(1, 2, 3, 4),
        tune_orders=(2, 3), tune_scales=(1.0,), eval_chars=1_000, sample_chars=60,
        nets=[NetSizes("HMM, 8 states", "hmm", states=8, batch=8, chunk=16, lr=0.05, steps=4),
              NetSizes("RNN (tanh), 32", "rnn", hidden=32, batch=8, chunk=16, steps=4),
              NetSizes("GRU, 32", "gru", hidden=32, batch=8, chunk=16, steps=4)],
    ),
    "cpu": Ch02Sizes(
        train_chars=None, val_chars=None, prefix_lengths=tuple(range(1, 11)), orders=tuple(range(1, 9)),
        tune_orders=(6, 7, 8), tune_scales=(1.0, 1.15, 1.3), eval_chars=5_000,
        nets=[NetSizes("HMM, 16 states", "hmm", states=16, batch=32, chunk=32, lr=0.2, steps=400),
              NetSizes("HMM, 64 states", "hmm", states=64, batch=32, chunk=32, lr=0.2, steps=400),
              NetSizes("RNN (tanh), 1x128", "rnn", hidden=128, batch=32, chunk=64, lr=4e-3, steps=300),
              NetSizes("GRU, 1x256", "gru", hidden=256, batch=32, chunk=64, lr=4e-3, steps=250)],
    ),
    # gpu: each net gets a time budget (the lead's GPU is shared); steps = min(cap, budget / step time).
    # The LSTM is data-limited, not compute-limited (1M characters): the cap keeps it under 50 epochs,
    # and a wide net with strong dropout generalises best on a text this small.
    "gpu": Ch02Sizes(
        train_chars=None, val_chars=None, prefix_lengths=tuple(range(1, 11)), orders=tuple(range(1, 9)),
        tune_orders=(6, 7, 8), tune_scales=(0.8, 0.9, 1.0, 1.15, 1.3), eval_chars=10_000, sample_chars=400,
        nets=[NetSizes("HMM, 64 states", "hmm", states=64, batch=128, chunk=64, lr=0.1, steps=3000, budget_s=15),
              NetSizes("HMM, 512 states", "hmm", states=512, batch=128, chunk=64, lr=0.1, steps=3000, budget_s=25),
              NetSizes("RNN (tanh), 2x512", "rnn", hidden=512, layers=2, dropout=0.1, batch=128, chunk=64,
                       lr=2e-3, steps=2500, budget_s=25),
              NetSizes("LSTM, 3x640", "lstm", embed=128, hidden=640, layers=3, dropout=0.4, batch=128,
                       chunk=128, lr=2e-3, steps=1200, budget_s=240)],
    ),
}
# fmt: on


# ---------------------------------------------------------------- data
def load_text(sizes: Ch02Sizes):
    """``(tokenizer, train_ids, val_ids)``: Tiny Shakespeare's 90/10 split as character ids.

    The vocabulary comes from the training split (it holds all 65 characters of the text).
    """
    train_text, val_text = load_shakespeare_split()
    tok = CharTokenizer(train_text)
    train_ids, val_ids = tok.encode(train_text), tok.encode(val_text)
    if sizes.train_chars:
        train_ids = train_ids[: sizes.train_chars]
    if sizes.val_chars:
        val_ids = val_ids[: sizes.val_chars]
    return tok, train_ids, val_ids


def prefix_statistics(train_ids, val_ids, K: int, lengths) -> list[dict]:
    """How many distinct length-L strings the training text holds (of K^L possible), and how many
    of the validation text's length-L contexts never occur in training."""
    rows = []
    for L in lengths:
        rows.append(
            {
                "length": L,
                "possible": float(K) ** L,
                "distinct_train": count_distinct(train_ids, L, K),
                "unseen_val": unseen_fraction(train_ids, val_ids, L, K),
            }
        )
    return rows


# ---------------------------------------------------------------- n-grams
def ngram_by_order(train_ids, val_ids, K: int, orders, k: float = 0.05) -> list[dict]:
    """Validation nats/char of add-k and (untuned) Kneser-Ney for each order."""
    rows = []
    for n in orders:
        t0 = time.time()
        kn = NGramLM(n, K).fit(train_ids)
        fit_s = time.time() - t0
        addk = NGramLM(n, K, smoothing="add-k", k=k).fit(train_ids)
        rows.append(
            {
                "order": n,
                "kneser_ney": kn.sequence_nll(val_ids),
                "add_k": addk.sequence_nll(val_ids),
                "counts": kn.num_counts(),
                "fit_seconds": fit_s,
            }
        )
    return rows


def best_ngram(train_ids, val_ids, K: int, sizes: Ch02Sizes, progress: bool = False):
    """Tune order and discounts on the last 10% of the *training* ids, refit on all of them,
    score the validation ids once. Returns ``(model, info)``."""
    t0 = time.time()
    best = tune_kneser_ney(
        train_ids, K, orders=sizes.tune_orders, scales=sizes.tune_scales, progress=progress
    )
    tune_s = time.time() - t0
    t0 = time.time()
    lm = NGramLM(best["order"], K, discount=tuple(map(tuple, best["discount"]))).fit(train_ids)
    fit_s = time.time() - t0
    info = {
        "order": best["order"],
        "holdout_nll": best["holdout_nll"],
        "val_nll": lm.sequence_nll(val_ids),
        "tune_seconds": tune_s,
        "fit_seconds": fit_s,
        "counts": lm.num_counts(),
        "discount": best["discount"],
        "tuning_table": best["table"],
    }
    return lm, info


# ---------------------------------------------------------------- HMMs and RNNs
def build_net(s: NetSizes, K: int, device) -> torch.nn.Module:
    if s.kind == "hmm":
        return HMM(HMMConfig(num_states=s.states, vocab_size=K)).to(device)
    cfg = RNNConfig(
        vocab_size=K,
        cell=s.kind,
        embed=s.embed,
        hidden=s.hidden,
        layers=s.layers,
        dropout=s.dropout,
    )
    return CharRNN(cfg).to(device)


def seconds_per_step(model, batches, lr: float, device, probe: int = 8, warm: int = 3) -> float:
    """Time ``probe`` training steps of a throw-away copy of ``model`` (after ``warm`` steps)."""
    clone = copy.deepcopy(model)
    opt = torch.optim.AdamW(clone.parameters(), lr=lr)
    loss_fn, it = TBPTTLoss(), iter(batches)
    t0 = None
    for i in range(warm + probe):
        if i == warm:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.time()
        try:
            batch = next(it)
        except StopIteration:
            it = iter(batches)
            batch = next(it)
        batch = (batch[0].to(device), batch[1].to(device), batch[2])
        with autocast(device):
            loss = loss_fn(clone, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.time() - t0) / probe


def train_net(
    s: NetSizes,
    train_ids,
    val_ids,
    K: int,
    device,
    seed: int = 0,
    eval_chars: int = 20_000,
    progress: bool = True,
):
    """Train one HMM or RNN with truncated BPTT; return ``(model, history, info)``.

    ``info`` holds the exact validation nats/char (the whole validation text, one pass, float32)
    and the training seconds.
    """
    with cpu_threads(1 if torch.device(device).type == "cpu" else None):
        return _train_net(s, train_ids, val_ids, K, device, seed, eval_chars, progress)


@contextlib.contextmanager
def cpu_threads(n: int | None):
    """Temporarily use ``n`` CPU threads (None: leave as is).

    These models run long chains of small sequential operations; on a laptop's two cores, and
    much more on a shared machine, synchronising two threads per operation costs more than it
    saves (measured here: 20 times slower for the HMM with two busy-waiting threads).
    """
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _train_net(s, train_ids, val_ids, K, device, seed, eval_chars, progress):
    torch.manual_seed(seed)
    model = build_net(s, K, device)
    batches = StreamBatches(train_ids, s.batch, s.chunk, bos=K, seed=seed)
    steps = s.steps
    if s.budget_s is not None:
        per_step = seconds_per_step(model, batches, s.lr, device)
        steps = int(max(50, min(s.steps, s.budget_s / per_step)))
    probe = val_ids[:eval_chars]
    hist = train(
        model,
        TBPTTLoss(),
        batches,
        steps=steps,
        lr=s.lr,
        warmup=min(100, steps // 10),
        eval_fn=lambda m: {"val_nll": m.sequence_nll(probe)},
        eval_every=max(1, steps // 5),
        progress=progress,
        time_limit=None if s.budget_s is None else 1.5 * s.budget_s,
    )
    t0 = time.time()
    val = model.sequence_nll(val_ids)
    info = {
        "name": s.name,
        "kind": s.kind,
        "parameters": model.num_parameters(),
        "steps": hist.eval_step[-1],
        "train_seconds": hist.seconds,
        "eval_seconds": time.time() - t0,
        "val_nll": val,
        "epochs": hist.eval_step[-1] * s.batch * s.chunk / len(train_ids),
    }
    return model, hist, info


# ---------------------------------------------------------------- table and figures
def table_rows(ngram_rows, best_info, net_infos, addk_order: int = 3) -> list[dict]:
    """The chapter table: model, size, validation nats and bits per character, training time."""
    rows = []
    addk = next((r for r in ngram_rows if r["order"] == addk_order), None)
    if addk is not None:
        rows.append(
            {
                "model": f"{addk_order}-gram, add-k",
                "size": f"{addk['counts']:,} counts",
                "val_nats": addk["add_k"],
                "seconds": addk["fit_seconds"],
            }
        )
    untuned = min(ngram_rows, key=lambda r: r["kneser_ney"])  # the best order, untuned
    rows.append(
        {
            "model": f"{untuned['order']}-gram, Kneser-Ney (estimated discounts)",
            "size": f"{untuned['counts']:,} counts",
            "val_nats": untuned["kneser_ney"],
            "seconds": untuned["fit_seconds"],
        }
    )
    rows.append(
        {
            "model": f"{best_info['order']}-gram, Kneser-Ney (tuned on held-out train)",
            "size": f"{best_info['counts']:,} counts",
            "val_nats": best_info["val_nll"],
            "seconds": best_info["fit_seconds"] + best_info["tune_seconds"],
        }
    )
    for info in net_infos:
        rows.append(
            {
                "model": info["name"],
                "size": f"{info['parameters']:,} parameters",
                "val_nats": info["val_nll"],
                "seconds": info["train_seconds"],
            }
        )
    for r in rows:
        r["val_bits"] = float(nats_to_bits(r["val_nats"]))
    return rows


def markdown_table(rows) -> str:
    lines = [
        "| model | parameters / counts | val nats/char | val bits/char | training time (s) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['size']} | {r['val_nats']:.4f} | {r['val_bits']:.4f} | {r['seconds']:.1f} |"
        )
    return "\n".join(lines)


def plot_prefixes(stats, ax=None):
    """Distinct prefixes per length (log scale) and the share of unseen validation contexts."""
    if ax is None:
        _, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    L = [r["length"] for r in stats]
    ax[0].semilogy(L, [r["possible"] for r in stats], "--", label="possible: $K^L$")
    ax[0].semilogy(L, [r["distinct_train"] for r in stats], "o-", label="distinct in training text")
    ax[0].set_xlabel("length L")
    ax[0].set_ylabel("number of strings")
    ax[0].legend()
    ax[0].grid(alpha=0.3)
    ax[1].plot(L, [100 * r["unseen_val"] for r in stats], "o-", color="C3")
    ax[1].set_xlabel("context length L")
    ax[1].set_ylabel("% of validation contexts unseen")
    ax[1].grid(alpha=0.3)
    return ax


def plot_orders(rows, best_info=None, ax=None):
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    n = [r["order"] for r in rows]
    ax.plot(n, [r["add_k"] for r in rows], "s-", label="add-k")
    ax.plot(n, [r["kneser_ney"] for r in rows], "o-", label="Kneser-Ney (estimated discounts)")
    if best_info is not None:
        ax.plot(
            [best_info["order"]],
            [best_info["val_nll"]],
            "*",
            ms=14,
            color="C3",
            label="Kneser-Ney, tuned on held-out train",
        )
    ax.set_xlabel("order n (context of n-1 characters)")
    ax.set_ylabel("validation nats / char")
    ax.set_ylim(top=min(4.5, max(r["add_k"] for r in rows) + 0.1))
    ax.legend()
    ax.grid(alpha=0.3)
    return ax


def samples_of(
    models: dict, tok: CharTokenizer, prompt: str, length: int, seed: int = 0
) -> dict[str, str]:
    """One sample of ``length`` characters from each model, all starting with ``prompt``."""
    out = {}
    p = tok.encode(prompt)
    for name, m in models.items():
        x = m.sample(1, length, prompt=p, generator=torch.Generator().manual_seed(seed))
        out[name] = tok.decode(x[0])
    return out


# ---------------------------------------------------------------- recipes
@recipe(
    "ch02-ngram",
    "Kneser-Ney n-grams on Tiny Shakespeare: per-order curve and tuned model (seconds)",
)
def ch02_ngram(setup: Setup, out: Path) -> dict:
    sizes = pick(SIZES, setup.profile)
    tok, train_ids, val_ids = load_text(sizes)
    rows = ngram_by_order(train_ids, val_ids, tok.vocab_size, sizes.orders)
    _, best = best_ngram(train_ids, val_ids, tok.vocab_size, sizes)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    plot_orders(rows, best, ax=ax)
    save_figure(fig, out, "ngram_orders")
    plt.close(fig)
    return {
        "by_order": rows,
        "best": best,
        "val_nats_per_char": best["val_nll"],
        "val_bits_per_char": float(nats_to_bits(best["val_nll"])),
    }


@recipe(
    "ch02-markov-to-rnn",
    "chapter 2 table: n-grams, HMMs, RNN/GRU/LSTM on Tiny Shakespeare characters",
)
def ch02_markov_to_rnn(setup: Setup, out: Path) -> dict:
    sizes = pick(SIZES, setup.profile)
    tok, train_ids, val_ids = load_text(sizes)
    K = tok.vocab_size
    stats = prefix_statistics(train_ids, val_ids, K, sizes.prefix_lengths)
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    plot_prefixes(stats, ax=ax)
    save_figure(fig, out, "prefixes")
    plt.close(fig)

    rows = ngram_by_order(train_ids, val_ids, K, sizes.orders)
    best_lm, best = best_ngram(train_ids, val_ids, K, sizes)
    print(f"best n-gram: order {best['order']}, val {best['val_nll']:.4f} nats/char", flush=True)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    plot_orders(rows, best, ax=ax)
    save_figure(fig, out, "ngram_orders")
    plt.close(fig)

    models, infos = {f"{best['order']}-gram KN": best_lm}, []
    fig, ax = plt.subplots(figsize=(7, 4))
    for s in sizes.nets:
        model, hist, info = train_net(
            s, train_ids, val_ids, K, setup.device, setup.seed, sizes.eval_chars, progress=False
        )
        print(
            f"{s.name}: val {info['val_nll']:.4f} nats/char, {info['steps']} steps, "
            f"{info['train_seconds']:.0f} s",
            flush=True,
        )
        models[s.name], infos = model, infos + [info]
        ax.plot(hist.eval_step, [e["val_nll"] for e in hist.eval], "o-", label=s.name)
    ax.axhline(best["val_nll"], color="k", ls="--", label=f"{best['order']}-gram Kneser-Ney")
    ax.set_xlabel("step")
    ax.set_ylabel(f"nats/char (first {sizes.eval_chars:,} val chars)")
    ax.legend()
    ax.grid(alpha=0.3)
    save_figure(fig, out, "training")
    plt.close(fig)

    table = table_rows(rows, best, infos)
    (out / "table.md").write_text(markdown_table(table) + "\n")
    samples = samples_of(models, tok, "ROMEO:\n", sizes.sample_chars, seed=setup.seed)
    (out / "samples.txt").write_text("".join(f"=== {k}\n{v}\n\n" for k, v in samples.items()))
    best_net = min(infos, key=lambda i: i["val_nll"]) if infos else None
    return {
        "table": table,
        "prefixes": stats,
        "ngram_by_order": rows,
        "best_ngram": best,
        "nets": infos,
        "best_net": best_net["name"] if best_net else None,
        "best_net_beats_ngram": bool(best_net and best_net["val_nll"] < best["val_nll"]),
    }
