"""The chapter-3 exercise checkers accept correct answers and reject typical wrong ones."""

import math

import pytest
import torch

from arnb.distributions import BinnedDensity, mixture_log_prob, pinball_loss
from arnb.exercises.ch03 import check_binned_log_density, check_mixture_log_prob, check_pinball_loss


def naive_mixture(logits, means, scales, y):  # underflows in the tails
    w = torch.softmax(logits, -1)
    dens = torch.exp(-0.5 * ((y[:, None] - means) / scales) ** 2) / (
        scales * math.sqrt(2 * math.pi)
    )
    return torch.log((w * dens).sum(-1))


def unnormalised_mixture(logits, means, scales, y):  # forgets log_softmax
    z = (y[:, None] - means) / scales
    return torch.logsumexp(
        logits - 0.5 * z * z - torch.log(scales) - 0.5 * math.log(2 * math.pi), -1
    )


def test_mixture_checker(capsys):
    assert check_mixture_log_prob(mixture_log_prob)
    assert "correct" in capsys.readouterr().out
    assert not check_mixture_log_prob(naive_mixture)
    assert "logsumexp" in capsys.readouterr().out
    assert not check_mixture_log_prob(unnormalised_mixture)
    assert "log_softmax" in capsys.readouterr().out
    assert not check_mixture_log_prob(lambda *a: 1 / 0)
    assert "ZeroDivisionError" in capsys.readouterr().out
    with pytest.raises(TypeError, match="function itself"):
        check_mixture_log_prob(3)


def test_pinball_checker(capsys):
    assert check_pinball_loss(pinball_loss)
    assert "correct" in capsys.readouterr().out
    swapped = lambda p, t, tau: pinball_loss(p, t, 1 - tau)  # noqa: E731
    assert not check_pinball_loss(swapped)
    assert "swapped" in capsys.readouterr().out
    assert not check_pinball_loss(lambda p, t, tau: (t - p).abs())
    assert not check_pinball_loss(lambda p, t, tau: pinball_loss(p, t, tau).mean())
    assert "elementwise" in capsys.readouterr().out


def test_binned_checker(capsys):
    def correct(logits, low, high, y):
        return BinnedDensity(logits, low, high).log_prob(y)

    def no_width(logits, low, high, y):
        return correct(logits, low, high, y) + math.log((high - low) / logits.shape[-1])

    assert check_binned_log_density(correct)
    assert not check_binned_log_density(no_width)
    assert "bin width" in capsys.readouterr().out
