"""Chapter 7 exercise checkers: the notebook's solutions pass, typical mistakes fail, the student
stubs print one 'not attempted yet' line."""

from pathlib import Path

import pytest
import torch

from arnb.enumeration import completions
from arnb.exercises import ch07 as ex
from arnb.sampling import sample_bernoulli
from arnb.testing import exercise_answer

NB = Path(__file__).resolve().parent.parent / "notebooks" / "07_any_order.ipynb"

NAMES = {
    "posterior": ex.check_posterior,
    "ensemble_log_prob": ex.check_ensemble_log_prob,
    "impute_in_order": ex.check_impute_in_order,
    "gibbs_impute": ex.check_gibbs_impute,
}


@pytest.mark.parametrize("name", list(NAMES))
def test_solution_passes(name):
    assert NAMES[name](exercise_answer(NB, name)) is True


@pytest.mark.parametrize("name", list(NAMES))
def test_stub_is_not_attempted(name, capsys):
    assert NAMES[name](exercise_answer(NB, name, student=True)) is False
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "not attempted yet" in out[0]


# ---------------------------------------------------------------------- typical wrong answers


def posterior_unnormalised(log_prob, dims, observed, values):
    full, _ = completions(dims, observed, values)
    return log_prob(full).exp()  # the joint, not divided by p(x_o)


def posterior_wrong_order(log_prob, dims, observed, values):
    full, _ = completions(dims, observed, values)
    lp = log_prob(full)
    return torch.softmax(lp, 0).flip(0)  # completions listed in the opposite order


@pytest.mark.parametrize("wrong", [posterior_unnormalised, posterior_wrong_order])
def test_posterior_catches(wrong):
    assert ex.check_posterior(wrong) is False


def ensemble_geometric(model, x, orders):
    return torch.stack([model.log_prob(x, order=o) for o in orders]).mean(0)


def ensemble_no_log_k(model, x, orders):
    return torch.logsumexp(torch.stack([model.log_prob(x, order=o) for o in orders]), 0)


def ensemble_of_logits(model, x, orders):
    logits = torch.stack([model(x, order=o) for o in orders]).mean(0)
    return -torch.nn.functional.binary_cross_entropy_with_logits(
        logits, x.double(), reduction="none"
    ).sum(-1)


@pytest.mark.parametrize("wrong", [ensemble_geometric, ensemble_no_log_k, ensemble_of_logits])
def test_ensemble_catches(wrong):
    assert ex.check_ensemble_log_prob(wrong) is False


def impute_independent(model, x, observed, generator=None):
    x = x.clone()
    with torch.no_grad():
        logits = model.conditionals(x, observed)  # one pass: no chain rule
    for d in range(x.shape[1]):
        if observed[d] == 0:
            x[:, d] = sample_bernoulli(logits[:, d], generator)
    return x


def impute_overwrites(model, x, observed, generator=None):
    known = torch.zeros_like(observed)  # forgets what was observed
    x = x.clone()
    with torch.no_grad():
        for d in range(x.shape[1]):
            x[:, d] = sample_bernoulli(model.conditionals(x, known)[:, d], generator)
            known[d] = 1
    return x


@pytest.mark.parametrize("wrong", [impute_independent, impute_overwrites])
def test_impute_catches(wrong):
    assert ex.check_impute_in_order(wrong) is False


def gibbs_no_sweeps(model, x, observed, sweeps, generator=None):
    return impute_independent(model, x, observed, generator)


def gibbs_blind_updates(model, x, observed, sweeps, generator=None):
    # redraws each pixel from p(x_j | x_o) only: never uses the other missing pixels
    x = impute_independent(model, x, observed, generator)
    with torch.no_grad():
        for _ in range(sweeps):
            for d in range(x.shape[1]):
                if observed[d] == 0:
                    x[:, d] = sample_bernoulli(model.conditionals(x, observed)[:, d], generator)
    return x


def gibbs_forgets_observed(model, x, observed, sweeps, generator=None):
    x = impute_independent(model, x, observed, generator)
    with torch.no_grad():
        for _ in range(sweeps):
            for d in range(x.shape[1]):
                known = torch.ones(x.shape[1])
                known[d] = 0
                x[:, d] = sample_bernoulli(model.conditionals(x, known)[:, d], generator)
    return x


@pytest.mark.parametrize("wrong", [gibbs_no_sweeps, gibbs_blind_updates, gibbs_forgets_observed])
def test_gibbs_catches(wrong):
    assert ex.check_gibbs_impute(wrong) is False
