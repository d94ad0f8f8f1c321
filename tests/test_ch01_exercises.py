"""The chapter-1 exercise checkers accept correct answers and reject wrong ones."""

import math

import torch
import torch.nn.functional as F

from arnb.exercises import ch01


def test_chain_rule_checker(capsys):
    def right(logits, x):
        return -F.binary_cross_entropy_with_logits(logits, x.float(), reduction="none").sum(-1)

    def naive(logits, x):  # right maths, but log(sigmoid) underflows for large logits
        p = torch.sigmoid(logits)
        return torch.where(x == 1, p.log(), (1 - p).log()).sum(-1)

    def wrong_sign(logits, x):
        return F.binary_cross_entropy_with_logits(logits, x.float(), reduction="none").sum(-1)

    assert ch01.check_chain_rule(right)
    assert "correct" in capsys.readouterr().out
    assert not ch01.check_chain_rule(naive)
    assert "non-finite" in capsys.readouterr().out
    assert not ch01.check_chain_rule(wrong_sign)
    assert not ch01.check_chain_rule(lambda logits, x: logits.sum())  # wrong shape


def test_bits_per_dim_checker(capsys):
    assert ch01.check_bits_per_dim(lambda nll, d: nll / (d * math.log(2)))
    assert not ch01.check_bits_per_dim(lambda nll, d: nll / d)
    assert "divide by ln 2" in capsys.readouterr().out
    assert not ch01.check_bits_per_dim(lambda nll, d: nll / math.log(2))
    assert not ch01.check_bits_per_dim(lambda nll, d: 1 / 0)


def test_made_mask_checker(capsys):
    assert ch01.check_made_mask(ch01.reference_made_mask)
    assert not ch01.check_made_mask(
        lambda i, o, out: (o[:, None] >= i[None, :]).float()
    )  # never strict
    assert "> versus >=" in capsys.readouterr().out
    assert not ch01.check_made_mask(lambda i, o, out: ch01.reference_made_mask(i, o, out).T)
    assert "(O, I)" in capsys.readouterr().out


def test_ancestral_sampler_checker(capsys):
    assert ch01.check_ancestral_sampler(ch01.reference_ancestral_sampler)

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
