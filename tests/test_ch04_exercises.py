"""Chapter 4: the exercise checkers accept right answers and reject wrong ones; the recipes run."""

import math

import torch

from arnb.distributions import bivariate_normal_log_prob
from arnb.exercises.ch04 import check_bias_sigma, check_bivariate_log_prob, check_mixture_log_prob


def right_bivariate(xy, mu, sigma, rho):
    return bivariate_normal_log_prob(xy, mu.unsqueeze(-2), sigma.unsqueeze(-2), rho.unsqueeze(-1))[
        ..., 0
    ]


def wrong_bivariate(xy, mu, sigma, rho):  # forgets the log(1 - rho^2) normaliser
    return right_bivariate(xy, mu, sigma, rho) + 0.5 * torch.log(1 - rho**2)


def naive_bivariate(xy, mu, sigma, rho):  # density first, log afterwards: underflows in the tail
    return torch.log(torch.exp(right_bivariate(xy, mu, sigma, rho)).float())


def test_bivariate_checker(capsys):
    assert check_bivariate_log_prob(right_bivariate)
    assert "correct" in capsys.readouterr().out
    assert not check_bivariate_log_prob(wrong_bivariate)
    assert not check_bivariate_log_prob(naive_bivariate)
    assert "far tail" in capsys.readouterr().out
    assert not check_bivariate_log_prob(lambda *a: 1 / 0)


def test_mixture_checker(capsys):
    assert check_mixture_log_prob(
        lambda lp, lc: torch.logsumexp(torch.log_softmax(lp, -1) + lc, -1)
    )
    naive = lambda lp, lc: torch.log((torch.softmax(lp, -1) * lc.exp()).sum(-1))  # noqa: E731
    assert not check_mixture_log_prob(naive)
    assert "far tail" in capsys.readouterr().out
    unnormalised = lambda lp, lc: torch.logsumexp(lp + lc, -1)  # noqa: E731
    assert not check_mixture_log_prob(unnormalised)


def test_bias_checker():
    assert check_bias_sigma(lambda lp, s, b: (lp * (1 + b), s * math.exp(-b)))
    assert not check_bias_sigma(lambda lp, s, b: (lp / (1 + b), s * math.exp(-b)))
    assert not check_bias_sigma(lambda lp, s, b: (lp * (1 + b), s * math.exp(b)))


def test_recipes_run_under_smoke(tmp_path):
    from arnb.chapters import load_all
    from arnb.config import setup

    recipes = load_all()
    env = setup(seed=0, profile="smoke", verbose=False)
    m = recipes["rnn-mdn-handwriting"].fn(env, tmp_path)
    assert all(math.isfinite(v) for v in m.values())
    assert (tmp_path / "handwriting_samples_bias_temperature.png").exists()
    m = recipes["handwriting-synthesis"].fn(env, tmp_path)
    assert math.isfinite(m["synthesis_test_nll_per_point"])
    assert (tmp_path / "synthesis_attention.png").exists()
