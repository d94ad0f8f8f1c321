"""Chapter 1 recipe helpers: parameter counts, the fitting pipeline on synthetic data, budgets."""

import dataclasses
import math

import torch

from arnb.data.tiny_mnist import TinyMNIST
from arnb.chapters.ch01_factorization import (
    SIZES,
    Minibatches,
    compare_models,
    format_rows,
    parameter_counts,
    sweep,
)


def test_parameter_counts():
    c = parameter_counts(16, 2, hidden=256)
    assert c["joint table"] == 65535 and c["independent"] == 16 and c["logistic AR"] == 136
    assert parameter_counts(784, 256)["joint table"] == 256**784 - 1  # exact integer
    assert math.log10(parameter_counts(784, 2)["joint table"]) > 235


def test_minibatches_cover_the_data_and_reshuffle():
    data = torch.arange(10).unsqueeze(1)
    mb = Minibatches(data, 5, seed=0)
    first = torch.cat(list(mb)).flatten().tolist()
    second = torch.cat(list(mb)).flatten().tolist()
    assert sorted(first) == list(range(10)) and first != second


def test_compare_models_on_synthetic_data():
    g = torch.Generator().manual_seed(0)

    def draw(n):
        x = (torch.rand(n, 4, generator=g) < 0.3).long()
        x[:, 3] = x[:, 0]  # a dependence the factorised models can learn
        return x

    data = TinyMNIST(2, draw(400), draw(200), draw(200))
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
