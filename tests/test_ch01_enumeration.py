"""Exact enumeration helpers: conditionals by completion against brute force over all
configurations."""

import math

import pytest
import torch

from arnb.enumeration import (
    completions,
    conditional_by_completion,
    empirical_distribution,
    enumerate_log_probs,
    marginal_log_prob,
    prefix_marginal_log_prob,
    total_variation,
)
from arnb.models.fvsbn import FVSBN
from arnb.models.made import MADE, MADEConfig


def model(order=None):
    m = FVSBN(6, order=order)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 1.5)
        m.bias.copy_(torch.randn(6, generator=g))
    return m


def test_enumerate_log_probs_is_complete_and_normalised():
    configs, logp = enumerate_log_probs(model().log_prob, 6)
    assert configs.shape == (64, 6) and logp.dtype == torch.float64
    assert len({tuple(c) for c in configs.tolist()}) == 64
    assert float(torch.logsumexp(logp, 0).exp()) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize(
    "observed,values",
    [([4, 5], [1, 0]), ([0, 3, 5], [1, 1, 0]), ([], []), ([0, 1, 2, 3, 4, 5], [1, 0, 1, 0, 1, 0])],
)
def test_conditional_by_completion_matches_brute_force(observed, values):
    m = model(order=[5, 0, 4, 1, 3, 2])
    configs, logp = enumerate_log_probs(m.log_prob, 6)
    match = torch.ones(64, dtype=torch.bool)
    for d, v in zip(observed, values):
        match &= configs[:, d] == v
    p_o = logp[match].exp().sum()
    r = conditional_by_completion(m.log_prob, 6, observed, values)
    assert r["evaluations"] == 2 ** (6 - len(observed))
    assert math.exp(r["log_marginal"]) == pytest.approx(float(p_o), rel=1e-9)
    assert float(r["log_conditional"].exp().sum()) == pytest.approx(1.0, abs=1e-9)
    want_marg = (logp[match].exp()[:, None] * configs[match].double()).sum(0) / p_o
    torch.testing.assert_close(r["marginals"], want_marg)
    assert torch.equal(
        r["completions"][:, observed],
        torch.tensor(values, dtype=torch.long).expand(len(r["completions"]), -1),
    )


def test_prefix_marginal_needs_no_sum():
    """For a prefix in the model's order the chain rule gives p(x_prefix) in one pass."""
    m = MADE(MADEConfig(6, hidden=(16,), order=[3, 1, 5, 0, 2, 4]))
    x = torch.tensor([[1, 0, 1, 1, 0, 1]])
    by_sum = marginal_log_prob(m.log_prob, 6, m.order[:3], x[0, m.order[:3]])
    assert float(prefix_marginal_log_prob(m, x, 3)) == pytest.approx(by_sum, abs=1e-5)


def test_total_variation_and_empirical_distribution():
    samples = torch.tensor([[0, 0], [1, 1], [1, 1], [0, 1]])
    emp = empirical_distribution(samples, 2)
    torch.testing.assert_close(emp, torch.tensor([0.25, 0.25, 0.0, 0.5], dtype=torch.float64))
    assert total_variation(emp, torch.full((4,), 0.25)) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="same shape"):
        total_variation(torch.ones(3), torch.ones(4))


def test_bad_observations_raise_clear_errors():
    with pytest.raises(ValueError, match="values"):
        completions(4, [0, 1], [1])
    with pytest.raises(ValueError, match=r"lie in \[0, 3\]"):
        completions(4, [4], [1])
    with pytest.raises(ValueError, match="repeat"):
        completions(4, [1, 1], [0, 0])
    with pytest.raises(ValueError, match="0 or 1"):
        completions(4, [1], [2])
    with pytest.raises(ValueError, match="too many"):
        enumerate_log_probs(lambda x: x.sum(-1), 30)
