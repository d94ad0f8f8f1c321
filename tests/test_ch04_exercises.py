"""Chapter 4: each exercise checker passes the notebook's own solution, fails typical wrong
answers with a message the reader can act on, and says "not attempted yet" on the stub; the
recipes run."""

import math
from pathlib import Path

import pytest
import torch

from arnb.exercises import ch04
from arnb.testing import exercise_answer

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "04_rnn_mdn.ipynb"
pytestmark = pytest.mark.usefixtures("one_thread")


def solution(name):
    return exercise_answer(NOTEBOOK, name)


@pytest.mark.parametrize(
    "name, check",
    [
        ("whitened_log_prob", ch04.check_bivariate_log_prob),
        ("masked_nll", ch04.check_masked_nll),
        ("bias_adjust", ch04.check_bias_sigma),
        ("sample_moves", ch04.check_bias_sampler),
    ],
)
def test_stub_is_not_attempted(name, check, capsys):
    assert check(exercise_answer(NOTEBOOK, name, student=True)) is False
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "not attempted yet" in out[0]


# ----------------------------------------------------------------------------- Exercise 1


def closed_form(xy, mu, sigma, rho):
    z1, z2 = ((xy - mu) / sigma).unbind(-1)
    quad = (z1 * z1 + z2 * z2 - 2 * rho * z1 * z2) / (1 - rho**2)
    return -math.log(2 * math.pi) - sigma.log().sum(-1) - 0.5 * torch.log(1 - rho**2) - quad / 2


def test_bivariate_checker(capsys):
    def no_normaliser(xy, mu, sigma, rho):  # forgets the log(1 - rho^2) term
        return closed_form(xy, mu, sigma, rho) + 0.5 * torch.log(1 - rho**2)

    def exp_then_log(xy, mu, sigma, rho):  # the density first, in float32: the tail underflows
        return torch.log(torch.exp(closed_form(xy, mu, sigma, rho)).float())

    def whitened_without_sqrt(xy, mu, sigma, rho):  # divides z2 by (1 - rho^2), not its root
        z1 = (xy[:, 0] - mu[:, 0]) / sigma[:, 0]
        z2 = ((xy[:, 1] - mu[:, 1]) / sigma[:, 1] - rho * z1) / (1 - rho**2)
        log_phi = -0.5 * (z1 * z1 + z2 * z2) - math.log(2 * math.pi)
        return log_phi - sigma.log().sum(-1) - 0.5 * torch.log(1 - rho**2)

    assert ch04.check_bivariate_log_prob(solution("whitened_log_prob"))
    assert "correct" in capsys.readouterr().out
    assert not ch04.check_bivariate_log_prob(no_normaliser)
    assert "expected" in capsys.readouterr().out
    assert not ch04.check_bivariate_log_prob(exp_then_log)
    assert "far tail" in capsys.readouterr().out
    assert not ch04.check_bivariate_log_prob(whitened_without_sqrt)
    assert "negative correlation" in capsys.readouterr().out
    assert not ch04.check_bivariate_log_prob(lambda *a: 1 / 0)
    assert "ZeroDivisionError" in capsys.readouterr().out


def test_bivariate_checker_needs_one_value_per_row(capsys):
    """Right on every single point, wrong on a batch: a sum over the whole batch, and a
    scalar instead of one value per row."""

    def batch_sum(xy, mu, sigma, rho):  # sums log sigma over the batch, not over (x, y)
        z1, z2 = ((xy - mu) / sigma).unbind(-1)
        quad = (z1 * z1 + z2 * z2 - 2 * rho * z1 * z2) / (1 - rho**2)
        return -math.log(2 * math.pi) - sigma.log().sum() - 0.5 * torch.log(1 - rho**2) - quad / 2

    assert not ch04.check_bivariate_log_prob(batch_sum)
    out = capsys.readouterr().out
    assert "1 of 6 cases wrong" in out and "a batch of 3 rows" in out
    assert not ch04.check_bivariate_log_prob(lambda *a: closed_form(*a).sum())
    assert "expected shape (3,), got ()" in capsys.readouterr().out


# ----------------------------------------------------------------------------- Exercise 2


def clean(x, mask):
    return torch.where(mask[..., None], x, torch.zeros_like(x))


def test_masked_nll_checker(capsys):
    def times_mask(log_prob, x, mask):  # NaN * 0 = NaN in the padding
        return -(log_prob(x) * mask).sum() / mask.sum()

    def select_after(log_prob, x, mask):  # right value, NaN gradient from NaN padding
        lp = log_prob(x)
        return -torch.where(mask, lp, torch.zeros_like(lp)).sum() / mask.sum()

    def mean_over_slots(log_prob, x, mask):  # divides by every slot, padding included
        lp = log_prob(clean(x, mask))
        return -torch.where(mask, lp, torch.zeros_like(lp)).mean()

    def mean_of_drawings(log_prob, x, mask):  # every drawing weighs the same, not every point
        lp = log_prob(clean(x, mask))
        lp = torch.where(mask, lp, torch.zeros_like(lp))
        return -(lp.sum(1) / mask.sum(1)).mean()

    def scores_padding(log_prob, x, mask):  # cleans the points but keeps the padding's log p
        return -log_prob(clean(x, mask)).sum() / mask.sum()

    def as_float(log_prob, x, mask):  # a number, not a tensor: no gradient reaches the model
        lp = log_prob(clean(x, mask))
        return (-torch.where(mask, lp, torch.zeros_like(lp)).sum() / mask.sum()).item()

    assert ch04.check_masked_nll(solution("masked_nll"))
    assert "correct (3 cases)" in capsys.readouterr().out
    assert not ch04.check_masked_nll(times_mask)
    out = capsys.readouterr().out
    assert "1 of 3" in out and "NaN * 0 is NaN" in out
    assert not ch04.check_masked_nll(select_after)
    out = capsys.readouterr().out
    assert "1 of 3" in out and "the gradient holds NaN" in out
    for wrong in (mean_over_slots, mean_of_drawings, scores_padding):
        assert not ch04.check_masked_nll(wrong)
        out = capsys.readouterr().out
        assert "lengths 6, 4, 1, 3" in out and "no padding" not in out
    assert not ch04.check_masked_nll(as_float)
    assert "carries no gradient" in capsys.readouterr().out


# ----------------------------------------------------------------------------- Exercise 3


def test_bias_checker(capsys):
    assert ch04.check_bias_sigma(solution("bias_adjust"))
    assert "correct" in capsys.readouterr().out
    assert not ch04.check_bias_sigma(lambda lp, s, b: (lp / (1 + b), s * math.exp(-b)))
    assert "weights" in capsys.readouterr().out
    assert not ch04.check_bias_sigma(lambda lp, s, b: (lp * (1 + b), s * math.exp(b)))
    assert "sigmas" in capsys.readouterr().out
    assert not ch04.check_bias_sigma(lambda lp, s, b: lp * (1 + b))  # not a pair
    assert "pair" in capsys.readouterr().out


# ----------------------------------------------------------------------------- Exercise 4


def sampler(*, use_rho=True, bias_sigma=True, bias_weights=True, greedy=False):
    """A mixture sampler with one of the typical mistakes switched on."""

    def sample_moves(logit_pi, mu, sigma, rho, bias, n, generator):
        weights = torch.softmax(logit_pi * ((1 + bias) if bias_weights else 1.0), -1)
        if greedy:
            k = weights.argmax().expand(n)
        else:
            k = torch.multinomial(weights, n, replacement=True, generator=generator)
        s = sigma[k] * (math.exp(-bias) if bias_sigma else 1.0)
        r = rho[k] if use_rho else torch.zeros_like(rho[k])
        z = torch.randn(n, 2, generator=generator, dtype=mu.dtype)
        dx = mu[k, 0] + s[:, 0] * z[:, 0]
        dy = mu[k, 1] + s[:, 1] * (r * z[:, 0] + torch.sqrt(1 - r * r) * z[:, 1])
        return torch.stack([dx, dy], -1)

    return sample_moves


def test_bias_sampler_checker(capsys):
    assert ch04.check_bias_sampler(solution("sample_moves"))
    assert "correct" in capsys.readouterr().out
    assert ch04.check_bias_sampler(sampler())  # another right answer passes too

    assert not ch04.check_bias_sampler(sampler(use_rho=False))
    out = capsys.readouterr().out
    assert "bias 0.0: P(1 dx + 1 dy" in out or "bias 0.0: P(1 dx + -1 dy" in out

    assert not ch04.check_bias_sampler(sampler(bias_sigma=False))
    out = capsys.readouterr().out
    assert "bias 1.5" in out and "bias 0.0" not in out

    assert not ch04.check_bias_sampler(sampler(bias_weights=False))
    assert "bias 1.5" in capsys.readouterr().out

    assert not ch04.check_bias_sampler(sampler(greedy=True))
    assert not ch04.check_bias_sampler(
        lambda lp, mu, s, r, b, n, g: torch.randn(n, 2)  # ignores the generator
    )
    assert "same generator seed" in capsys.readouterr().out


# ----------------------------------------------------------------------------- recipes


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
