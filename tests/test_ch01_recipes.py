"""Chapter 1 recipe helpers: parameter counts, the fitting pipeline on synthetic data, budgets."""

import dataclasses
import math

import pytest
import torch

from arnb.chapters.ch01_factorization import (
    SIZES,
    compare_models,
    fit_ar,
    format_rows,
    nll_per_image,
    parameter_counts,
    schedule_for,
    sweep,
)
from arnb.data.tiny_mnist import TinyMNIST
from arnb.models.fvsbn import FVSBN


def test_parameter_counts():
    c = parameter_counts(16, 2, hidden=256)
    assert c["joint table"] == 65535 and c["independent"] == 16 and c["logistic AR"] == 136
    assert parameter_counts(784, 256)["joint table"] == 256**784 - 1  # exact integer
    assert math.log10(parameter_counts(784, 2)["joint table"]) > 235


def test_schedule_grows_with_the_training_set():
    sizes = SIZES["cpu"]
    steps = [schedule_for(sizes.made, n, sizes).steps for n in (100, 10000, 55000, 10**6)]
    assert steps == [200, 585, 1500, 1500]  # at least min_steps, 30 epochs, at most the cap
    assert schedule_for(sizes.made, 55000, sizes).eval_every == 100
    assert schedule_for(sizes.made, 100, sizes).eval_every == 20  # still 10 evaluations
    assert schedule_for(sizes.made, 100, sizes).lr == sizes.made.lr


def _draw(g, n):
    x = (torch.rand(n, 4, generator=g) < 0.3).long()
    x[:, 3] = x[:, 0]  # a dependence the factorised models can learn
    return x


def test_fit_ar_returns_the_weights_with_the_best_validation_nll():
    g = torch.Generator().manual_seed(0)
    train_x, val_x = _draw(g, 64), _draw(g, 64)
    # a learning rate this high makes the validation score jump about, so the best weights
    # are not the last ones
    schedule = dataclasses.replace(
        SIZES["smoke"].fvsbn, steps=12, lr=3.0, batch_size=8, eval_every=1, threads=None
    )
    torch.manual_seed(0)
    model = FVSBN(4)
    fit = fit_ar(model, train_x, val_x, schedule, seed=0)
    scores = [e["val_nll"] for e in fit["history"].eval]
    assert fit["steps"] == 12 and len(scores) == 12
    assert fit["selected_step"] == fit["history"].eval_step[scores.index(min(scores))]
    assert fit["selected_step"] < 12, "test needs a run whose last step is not best"
    assert fit["best_val_nll"] == min(scores)
    again = nll_per_image(model, val_x, SIZES["smoke"])
    assert again == pytest.approx(min(scores), rel=1e-6)
    assert not model.training


def test_compare_models_on_synthetic_data():
    g = torch.Generator().manual_seed(0)
    data = TinyMNIST(2, _draw(g, 400), _draw(g, 200), _draw(g, 200))
    rows, models = compare_models(data, 400, SIZES["smoke"])
    assert [r["model"] for r in rows] == ["table", "FVSBN", "MADE"]
    assert rows[0]["free_parameters"] == 15 and rows[1]["free_parameters"] == 10
    for r in rows:
        assert math.isfinite(r["test_nll"]) and r["test_nll"] > 0
    # all beat the uniform distribution; the table, fitted exactly, also captures the copy x3 = x0
    # (entropy 3 H(0.3) = 1.83 nats, against 2.44 for independent pixels)
    assert all(r["test_nll"] < 4 * math.log(2) for r in rows)
    assert rows[0]["test_nll"] < 2.1
    assert "| table |" in format_rows(rows)
    assert set(models) == {"table", "FVSBN", "MADE"}


def test_sweep_respects_its_time_budget():
    sizes = dataclasses.replace(SIZES["smoke"], budget=-1.0)
    result = sweep(sizes)
    assert result["rows"] == [] and len(result["skipped"]) == len(sizes.image_sizes) * len(
        sizes.train_sizes
    )
