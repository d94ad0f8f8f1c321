"""The chapter-1 exercise checkers: each passes the notebook's own solution, fails typical wrong
answers with a message the reader can act on, and says "not attempted yet" on the stub."""

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from arnb.exercises import ch01
from arnb.testing import exercise_answer

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "01_factorization.ipynb"


def solution(name):
    return exercise_answer(NOTEBOOK, name)


@pytest.mark.parametrize(
    "name, check",
    [
        ("log_prob_from_logits", ch01.check_chain_rule),
        ("to_bits_per_dim", ch01.check_bits_per_dim),
        ("made_mask", ch01.check_made_mask),
        ("my_sampler", ch01.check_ancestral_sampler),
        ("fit_by_gradient", ch01.check_fit_by_gradient),
    ],
)
def test_stub_is_not_attempted(name, check, capsys):
    assert check(exercise_answer(NOTEBOOK, name, student=True)) is False
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "not attempted yet" in out[0]


def test_chain_rule_checker(capsys):
    def naive(logits, x):  # right maths, but log(sigmoid) underflows for large logits
        p = torch.sigmoid(logits)
        return torch.where(x == 1, p.log(), (1 - p).log()).sum(-1)

    def wrong_sign(logits, x):
        return F.binary_cross_entropy_with_logits(logits, x.float(), reduction="none").sum(-1)

    assert ch01.check_chain_rule(solution("log_prob_from_logits"))
    assert "correct" in capsys.readouterr().out
    assert not ch01.check_chain_rule(naive)
    assert "non-finite" in capsys.readouterr().out
    assert not ch01.check_chain_rule(wrong_sign)
    assert "expected" in capsys.readouterr().out
    assert not ch01.check_chain_rule(lambda logits, x: logits.sum())  # wrong shape


def test_bits_per_dim_checker(capsys):
    assert ch01.check_bits_per_dim(solution("to_bits_per_dim"))
    assert not ch01.check_bits_per_dim(lambda nll, d: nll / d)
    assert "divide by ln 2" in capsys.readouterr().out
    assert not ch01.check_bits_per_dim(lambda nll, d: nll / math.log(2))
    assert "divide by D" in capsys.readouterr().out
    assert not ch01.check_bits_per_dim(lambda nll, d: 1 / 0)


def test_made_mask_checker(capsys):
    made_mask = solution("made_mask")
    assert ch01.check_made_mask(made_mask)
    assert not ch01.check_made_mask(lambda i, o, out: (o[:, None] >= i[None, :]).float())
    assert "> versus >=" in capsys.readouterr().out
    assert not ch01.check_made_mask(lambda i, o, out: made_mask(i, o, out).T)
    assert "(O, I)" in capsys.readouterr().out


def test_ancestral_sampler_checker(capsys):
    assert ch01.check_ancestral_sampler(solution("my_sampler"))

    def natural_order(model, n, generator=None):  # ignores the model's order
        x = torch.zeros(n, model.dims, dtype=torch.long)
        for k in range(model.dims):
            p = torch.sigmoid(model(x)[:, k]).detach()
            x[:, k] = (torch.rand(n, generator=generator) < p).long()
        return x

    def independent(model, n, generator=None):  # conditions on nothing
        x = torch.zeros(n, model.dims, dtype=torch.long)
        p = torch.sigmoid(model(x)).detach()
        return (torch.rand(n, model.dims, generator=generator) < p).long()

    capsys.readouterr()
    assert not ch01.check_ancestral_sampler(natural_order)
    assert "chi-square" in capsys.readouterr().out
    assert not ch01.check_ancestral_sampler(independent)
    assert not ch01.check_ancestral_sampler(lambda m, n, g: torch.zeros(n, 3))


def _closed_form_loop(resid_sign=1.0, transpose=False, mean=True):
    """A family of answers to the training-loop exercise, right or with a typical slip."""

    def fit(model, batches, lr):
        rows, cols = torch.tril_indices(model.dims, model.dims, offset=-1)
        losses = []
        for x in batches:
            xf = x.float()
            losses.append(float(-model.log_prob(x).mean()))
            resid = resid_sign * (torch.sigmoid(model(xf)) - xf)
            grad = xf.T @ resid if transpose else resid.T @ xf
            scale = len(x) if mean else 1
            model.weight -= lr * grad[rows, cols] / scale
            model.bias -= lr * resid.sum(0) / scale
        return losses

    return fit


def test_fit_by_gradient_checker(capsys):
    assert ch01.check_fit_by_gradient(solution("fit_by_gradient"))
    assert "correct" in capsys.readouterr().out
    assert ch01.check_fit_by_gradient(_closed_form_loop())  # the family's right member
    capsys.readouterr()
    assert not ch01.check_fit_by_gradient(_closed_form_loop(resid_sign=-1.0))  # ascent
    assert "did not go down" in capsys.readouterr().out
    assert not ch01.check_fit_by_gradient(_closed_form_loop(transpose=True))  # W_ji for W_ij
    assert "NLL reached" in capsys.readouterr().out
    assert not ch01.check_fit_by_gradient(_closed_form_loop(mean=False))  # sum, not mean
    assert "did not go down" in capsys.readouterr().out

    def with_autograd(model, batches, lr):
        losses = []
        for x in batches:
            loss = -model.log_prob(x).mean()
            loss.backward()
            losses.append(loss.item())
        return losses

    assert not ch01.check_fit_by_gradient(with_autograd)
    assert "closed form" in capsys.readouterr().out
