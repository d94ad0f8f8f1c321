"""A seconds-long recipe that proves the command-line path: fit a Markov chain to samples of another."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import torch

from ..config import Setup
from ..models import MarkovChain
from ..plotting import plot_history, save_figure
from ..train import train
from . import recipe


@recipe("markov-chain", "fit a 4-symbol Markov chain to samples of a random one (a pipeline check)")
def markov_chain(setup: Setup, out: Path) -> dict:
    g = torch.Generator().manual_seed(setup.seed)
    truth = MarkovChain(4, 12)
    data = truth.sample(4096, generator=g)
    model = MarkovChain(4, 12).to(setup.device)
    batches = list(data.split(256))
    hist = train(
        model,
        lambda m, x: m.nll(x),
        batches,
        steps=300,
        lr=0.05,
        eval_fn=lambda m: {"nll": m.nll(data.to(setup.device))},
        eval_every=100,
        progress=False,
    )
    fig, ax = plt.subplots(figsize=(5, 3))
    plot_history(hist, "nll", ax=ax)
    save_figure(fig, out, "loss")
    plt.close(fig)
    with torch.no_grad():
        true_nll = float(truth.nll(data))
    return {"fitted_nll_nats": hist.eval[-1]["nll"], "true_model_nll_nats": true_nll}
