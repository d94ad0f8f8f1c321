"""Chapter 2: from Markov chains to HMMs to RNNs on the characters of Tiny Shakespeare.

Every model is scored on the same validation text (the last 10% of the characters) in nats per
character, each character conditioned on everything before it that the model can use. The
notebook ``02_markov_to_rnn`` calls these functions step by step; the recipes run them in one go::

    python -m arnb run ch02-ngram --profile cpu          # tuned Kneser-Ney, seconds
    python -m arnb run ch02-markov-to-rnn --profile gpu  # the chapter table (about 5 minutes)
    python -m arnb run markov-chain                      # a pipeline check: fit a Markov chain

All sizes live in :data:`SIZES` (the pipeline check's in :class:`MarkovCheck`): each trained
model nests its own config and one :class:`~arnb.train.Schedule`, and :func:`arnb.train.train`
does the rest (step planning from a time budget, threads, keeping the best weights).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from ..config import Setup, pick
from ..data import Minibatches, load_shakespeare_split
from ..data.text import StreamBatches
from ..metrics import nats_to_bits
from ..models.hmm import HMM, HMMConfig
from ..models.markov_chain import MarkovChain
from ..models.ngram import NGramLM, count_distinct, tune_kneser_ney, unseen_fraction
from ..models.rnn_lm import CharRNN, RNNConfig, TBPTTLoss
from ..models.sequence import SequenceLM
from ..plotting import plot_history
from ..tokenizers import CharTokenizer
from ..train import Schedule, Stopwatch, cpu_threads, train
from . import new_figure, recipe


@dataclass
class NetRun:
    """One trained model (an HMM or an RNN): its config, its schedule and its TBPTT chunk.

    ``schedule.batch_size`` is the number of parallel streams; ``schedule.seconds`` (GPU) sizes
    the run to a time budget, at most ``schedule.steps`` steps. The vocabulary size of the
    config is replaced by the tokenizer's.
    """

    name: str
    model: HMMConfig | RNNConfig
    schedule: Schedule
    chunk: int = 64  # truncated-BPTT length: symbols per stream and step

    @property
    def kind(self) -> str:
        """``"hmm"``, or the RNN's cell: ``"rnn"``, ``"gru"`` or ``"lstm"``."""
        return "hmm" if isinstance(self.model, HMMConfig) else self.model.cell


@dataclass
class Ch02Run:
    train_chars: int | None  # None: the whole training split
    val_chars: int | None  # None: the whole validation split
    prefix_lengths: tuple[int, ...]
    orders: tuple[int, ...]  # n-gram orders for the per-order curve
    tune_orders: tuple[int, ...]  # orders tried when tuning Kneser-Ney on held-out training text
    tune_scales: tuple[float, ...]
    nets: list[NetRun] = field(default_factory=list)
    eval_chars: int = 20_000  # validation characters scored during training (the curve only)
    sample_chars: int = 300
    add_k: float = 0.05  # pseudo-count of the add-k n-grams
    table_add_k_order: int = 3  # the add-k row of the chapter table


# Small sequential operations run fastest on one CPU thread (threads=1 on the laptop
# profiles): synchronising two threads per operation costs more than it saves (measured: 20
# times slower for the HMM with two busy-waiting threads). The 512-wide GRU and LSTM of `cpu`
# are the exception: their matrix products are large enough that two threads make a step 1.4
# (GRU) and 2 (LSTM) times faster. Their 1,200 steps (2.4 epochs, 3.5 to 4 minutes each on 2
# cores) are what it takes to end below the tuned n-gram; 250 steps of 256-wide nets stopped
# 0.4 nats above it. Each run warms up for a tenth of its steps and evaluates five times; on
# the GPU, a tenth and a fifth of the steps its budget gave on the H200 (285 and 419 for the
# HMMs, the caps for the RNNs), with a time limit of 1.5 budgets as the safety net.
# fmt: off
SIZES = {
    "smoke": Ch02Run(
        train_chars=60_000, val_chars=5_000, prefix_lengths=(1, 2, 3, 4), orders=(1, 2, 3, 4),
        tune_orders=(5, 6, 7), tune_scales=(1.0,), eval_chars=1_000, sample_chars=60,
        nets=[
            NetRun("HMM, 8 states", HMMConfig(num_states=8),
                   Schedule(steps=4, lr=0.05, batch_size=8, eval_every=1, threads=1), chunk=16),
            NetRun("RNN (tanh), 32", RNNConfig(cell="rnn", hidden=32, layers=1),
                   Schedule(steps=4, lr=3e-3, batch_size=8, eval_every=1, threads=1), chunk=16),
            NetRun("GRU, 32", RNNConfig(cell="gru", hidden=32, layers=1),
                   Schedule(steps=4, lr=3e-3, batch_size=8, eval_every=1, threads=1), chunk=16),
            NetRun("LSTM, 32", RNNConfig(cell="lstm", hidden=32, layers=1),
                   Schedule(steps=4, lr=3e-3, batch_size=8, eval_every=1, threads=1), chunk=16),
        ],
    ),
    "cpu": Ch02Run(
        train_chars=None, val_chars=None,
        prefix_lengths=tuple(range(1, 11)), orders=tuple(range(1, 9)),
        tune_orders=(6, 7, 8, 9, 10), tune_scales=(1.0, 1.15, 1.3), eval_chars=5_000,
        nets=[
            NetRun("HMM, 16 states", HMMConfig(num_states=16),
                   Schedule(steps=400, lr=0.2, batch_size=32, warmup=40, eval_every=80, threads=1),
                   chunk=32),
            NetRun("HMM, 64 states", HMMConfig(num_states=64),
                   Schedule(steps=400, lr=0.2, batch_size=32, warmup=40, eval_every=80, threads=1),
                   chunk=32),
            NetRun("RNN (tanh), 1x128", RNNConfig(cell="rnn", hidden=128, layers=1),
                   Schedule(steps=300, lr=4e-3, batch_size=32, warmup=30, eval_every=60, threads=1),
                   chunk=64),
            NetRun("GRU, 1x512", RNNConfig(cell="gru", hidden=512, layers=1),
                   Schedule(steps=1200, lr=4e-3, batch_size=32, warmup=120, eval_every=240,
                            threads=2),
                   chunk=64),
            NetRun("LSTM, 1x512", RNNConfig(cell="lstm", hidden=512, layers=1),
                   Schedule(steps=1200, lr=4e-3, batch_size=32, warmup=120, eval_every=240,
                            threads=2),
                   chunk=64),
        ],
    ),
    # gpu: each net gets a time budget (the lead's GPU is shared);
    # steps = min(cap, budget / step time). The LSTM is data-limited, not compute-limited (1M
    # characters): the cap keeps it under 50 epochs, and a wide net with strong dropout
    # generalises best on a text this small.
    "gpu": Ch02Run(
        train_chars=None, val_chars=None,
        prefix_lengths=tuple(range(1, 11)), orders=tuple(range(1, 9)),
        tune_orders=(6, 7, 8, 9, 10), tune_scales=(0.8, 0.9, 1.0, 1.15, 1.3), eval_chars=10_000,
        sample_chars=400,
        nets=[
            NetRun("HMM, 64 states", HMMConfig(num_states=64),
                   Schedule(steps=3000, lr=0.1, batch_size=128, warmup=28, eval_every=57,
                            seconds=15, time_limit=22.5),
                   chunk=64),
            NetRun("HMM, 512 states", HMMConfig(num_states=512),
                   Schedule(steps=3000, lr=0.1, batch_size=128, warmup=41, eval_every=83,
                            seconds=25, time_limit=37.5),
                   chunk=64),
            NetRun("RNN (tanh), 2x512", RNNConfig(cell="rnn", hidden=512, layers=2, dropout=0.1),
                   Schedule(steps=2500, lr=2e-3, batch_size=128, warmup=100, eval_every=500,
                            seconds=25, time_limit=37.5),
                   chunk=64),
            NetRun("LSTM, 3x640",
                   RNNConfig(cell="lstm", embed=128, hidden=640, layers=3, dropout=0.4),
                   Schedule(steps=1200, lr=2e-3, batch_size=128, warmup=100, eval_every=240,
                            seconds=240, time_limit=360),
                   chunk=128),
        ],
    ),
}
# fmt: on


# ---------------------------------------------------------------- data
def load_text(sizes: Ch02Run):
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
def ngram_by_order(train_ids, val_ids, K: int, orders, k: float) -> list[dict]:
    """Validation nats/char of add-k (pseudo-count ``k``) and (untuned) Kneser-Ney per order."""
    rows = []
    for n in orders:
        with Stopwatch() as watch:
            kn = NGramLM(n, K).fit(train_ids)
        addk = NGramLM(n, K, smoothing="add-k", k=k).fit(train_ids)
        rows.append(
            {
                "order": n,
                "kneser_ney": kn.sequence_nll(val_ids),
                "add_k": addk.sequence_nll(val_ids),
                "counts": kn.num_counts(),
                "fit_seconds": watch.seconds,
            }
        )
    return rows


def best_ngram(train_ids, val_ids, K: int, sizes: Ch02Run, progress: bool = False):
    """Tune order and discounts on the last 10% of the *training* ids, refit on all of them,
    score the validation ids once. Returns ``(model, info)``."""
    with Stopwatch() as tuning:
        best = tune_kneser_ney(
            train_ids, K, orders=sizes.tune_orders, scales=sizes.tune_scales, progress=progress
        )
    with Stopwatch() as fitting:
        discount = tuple(map(tuple, best["discount"]))
        lm = NGramLM(best["order"], K, discount=discount).fit(train_ids)
    info = {
        "order": best["order"],
        "holdout_nll": best["holdout_nll"],
        "val_nll": lm.sequence_nll(val_ids),
        "tune_seconds": tuning.seconds,
        "fit_seconds": fitting.seconds,
        "counts": lm.num_counts(),
        "discount": best["discount"],
        "tuning_table": best["table"],
    }
    return lm, info


# ---------------------------------------------------------------- HMMs and RNNs
def build_net(run: NetRun, K: int, device) -> SequenceLM:
    """The HMM or RNN of ``run`` over the tokenizer's ``K`` symbols, on ``device``."""
    config = replace(run.model, vocab_size=K)
    model = HMM(config) if isinstance(config, HMMConfig) else CharRNN(config)
    return model.to(device)


def train_net(
    run: NetRun,
    train_ids,
    val_ids,
    K: int,
    device,
    seed: int = 0,
    eval_chars: int = 20_000,
    progress: bool = True,
):
    """Train one HMM or RNN with truncated BPTT; return ``(model, history, info)``.

    The curve scores the first ``eval_chars`` validation characters; the model comes back with
    its last weights (choosing weights on validation text would flatter the validation figure,
    which the n-grams never see). ``info`` holds the exact validation nats/char (the
    whole validation text, one pass, float32) and the training seconds.
    """
    torch.manual_seed(seed)
    model = build_net(run, K, device)
    batches = StreamBatches(train_ids.to(device), run.schedule.batch_size, run.chunk, seed=seed)
    probe = val_ids[:eval_chars]
    hist = train(
        model,
        TBPTTLoss(),
        batches,
        run.schedule,
        eval_fn=lambda m: {"val_nll": m.sequence_nll(probe)},
        progress=progress,
        desc=run.name,
    )
    with cpu_threads(run.schedule.threads), Stopwatch(device) as scoring:
        val = model.sequence_nll(val_ids)
    steps = hist.eval_step[-1]
    info = {
        "name": run.name,
        "kind": run.kind,
        "parameters": model.num_parameters(),
        "steps": steps,
        "selected_step": hist.selected_step,
        "train_seconds": hist.seconds,
        "eval_seconds": scoring.seconds,
        "val_nll": val,
        "epochs": steps * run.schedule.batch_size * run.chunk / len(train_ids),
    }
    return model, hist, info


# ---------------------------------------------------------------- table and figures
def table_rows(ngram_rows, best_info, net_infos, addk_order: int) -> list[dict]:
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
    # the best order on the validation text: a reference, not a fair entry (the tuned row is)
    untuned = min(ngram_rows, key=lambda r: r["kneser_ney"])
    rows.append(
        {
            "model": f"{untuned['order']}-gram, Kneser-Ney (estimated discounts, "
            "order chosen on validation)",
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
            f"| {r['model']} | {r['size']} | {r['val_nats']:.4f} | {r['val_bits']:.4f} | "
            f"{r['seconds']:.1f} |"
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


def plot_training(histories: dict, ngram: NGramLM, probe: torch.Tensor, ax=None):
    """The trained models' validation curves and, dashed, the n-gram on the same characters.

    ``histories`` maps a name to the :class:`~arnb.train.History` of :func:`train_net`, whose
    curve scores ``probe`` (the first ``eval_chars`` validation ids, 1-D); the n-gram is scored
    on ``probe`` too, since the start of the text is easier than the whole of it.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    for name, hist in histories.items():
        ax.plot(hist.eval_step, [e["val_nll"] for e in hist.eval], "o-", label=name)
    label = f"{ngram.order}-gram Kneser-Ney (tuned)"
    ax.axhline(ngram.sequence_nll(probe), color="k", ls="--", label=label)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"nats/char, first {len(probe):,} val chars")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: covers no curve
    ax.grid(alpha=0.3)
    return ax


def samples_of(
    models: dict, tok: CharTokenizer, prompt: str, length: int, seed: int = 0
) -> dict[str, str]:
    """One sample of ``length`` characters from each model, all starting with ``prompt``."""
    out = {}
    p = tok.encode(prompt)
    for name, m in models.items():
        x = m.sample(1, prompt=p, generator=torch.Generator().manual_seed(seed), length=length)
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
    rows = ngram_by_order(train_ids, val_ids, tok.vocab_size, sizes.orders, sizes.add_k)
    _, best = best_ngram(train_ids, val_ids, tok.vocab_size, sizes)
    with new_figure(out, "ngram_orders", figsize=(6, 3.5)) as (_, ax):
        plot_orders(rows, best, ax=ax)
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
    with new_figure(out, "prefixes", 1, 2, figsize=(10, 3.5)) as (_, ax):
        plot_prefixes(stats, ax=ax)

    rows = ngram_by_order(train_ids, val_ids, K, sizes.orders, sizes.add_k)
    best_lm, best = best_ngram(train_ids, val_ids, K, sizes)
    print(f"best n-gram: order {best['order']}, val {best['val_nll']:.4f} nats/char", flush=True)
    with new_figure(out, "ngram_orders", figsize=(6, 3.5)) as (_, ax):
        plot_orders(rows, best, ax=ax)

    models, infos = {f"{best['order']}-gram KN": best_lm}, []
    histories = {}
    for s in sizes.nets:
        model, histories[s.name], info = train_net(
            s, train_ids, val_ids, K, setup.device, setup.seed, sizes.eval_chars, progress=False
        )
        print(
            f"{s.name}: val {info['val_nll']:.4f} nats/char, {info['steps']} steps, "
            f"{info['train_seconds']:.0f} s",
            flush=True,
        )
        models[s.name], infos = model, infos + [info]
    with new_figure(out, "training", figsize=(7, 4)) as (_, ax):
        plot_training(histories, best_lm, val_ids[: sizes.eval_chars], ax=ax)

    table = table_rows(rows, best, infos, sizes.table_add_k_order)
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


# ---------------------------------------------------------------- the pipeline check
@dataclass
class MarkovCheck:
    """The ``markov-chain`` recipe's sizes (one for every profile: it runs in seconds)."""

    num_classes: int = 4
    length: int = 12
    samples: int = 4096
    schedule: Schedule = field(
        default_factory=lambda: Schedule(
            steps=300, lr=0.05, batch_size=256, eval_every=100, threads=1
        )
    )


@recipe("markov-chain", "fit a 4-symbol Markov chain to samples of a random one (a pipeline check)")
def markov_chain(setup: Setup, out: Path) -> dict:
    """The smallest end-to-end run of the command line: data, training loop, figure, metrics."""
    run = MarkovCheck()
    g = torch.Generator().manual_seed(setup.seed)
    truth = MarkovChain(run.num_classes, run.length)
    data = truth.sample(run.samples, generator=g).to(setup.device)
    model = MarkovChain(run.num_classes, run.length).to(setup.device)
    batches = Minibatches(data, batch_size=run.schedule.batch_size, seed=setup.seed)
    hist = train(
        model,
        lambda m, x: m.nll(x),
        batches,
        run.schedule,
        eval_fn=lambda m: {"nll": m.nll(data)},
        progress=False,
    )
    with new_figure(out, "loss", figsize=(5, 3)) as (_, ax):
        plot_history(hist, "nll", ax=ax)
    with torch.no_grad():
        true_nll = float(truth.nll(data.cpu()))
    return {"fitted_nll_nats": hist.eval[-1]["nll"], "true_model_nll_nats": true_nll}
