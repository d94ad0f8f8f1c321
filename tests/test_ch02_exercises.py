"""Chapter 2: each exercise checker passes the notebook's own solution, fails typical wrong
answers with a message the reader can act on, and says "not attempted yet" on the stub."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from arnb.exercises import ch02
from arnb.testing import exercise_answer

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "02_markov_to_rnn.ipynb"


def solution(name):
    return exercise_answer(NOTEBOOK, name)


@pytest.mark.parametrize(
    "name, check",
    [
        ("addk_bigram", ch02.check_addk_bigram),
        ("continuation_counts", ch02.check_continuation_counts),
        ("kneser_ney_bigram", ch02.check_kneser_ney_bigram),
        ("hmm_log_likelihood", ch02.check_forward),
    ],
)
def test_stub_is_not_attempted(name, check, capsys):
    assert check(exercise_answer(NOTEBOOK, name, student=True)) is False
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "not attempted yet" in out[0]


def _counts(x, K):
    c = torch.zeros(K, K, dtype=torch.float64)
    for a, b in zip(x.tolist(), x[1:].tolist()):
        c[a, b] += 1
    return c


# ---------------------------------------------------------------- add-k
def test_addk_checker(capsys):
    assert ch02.check_addk_bigram(solution("addk_bigram"))
    assert "correct" in capsys.readouterr().out

    def forgets_k_times_K(x, K, k):  # the denominator adds k once, not k K
        c = _counts(x, K)
        return (c + k) / (c.sum(1, keepdim=True) + k)

    def unigram_denominator(x, K, k):  # c(h) counted over the whole text, the last symbol too
        c = _counts(x, K)
        n = torch.bincount(x, minlength=K).double()[:, None]
        return (c + k) / (n + k * K)

    assert not ch02.check_addk_bigram(forgets_k_times_K)
    assert "sums to" in capsys.readouterr().out
    assert not ch02.check_addk_bigram(unigram_denominator)
    assert "not 1" in capsys.readouterr().out
    assert not ch02.check_addk_bigram(lambda x, K, k: torch.zeros(K))  # wrong shape
    assert "expected a" in capsys.readouterr().out


# ---------------------------------------------------------------- continuation counts
def test_continuation_checker(capsys):
    def raw_counts(text):
        return {c: text[1:].count(c) for c in set(text[1:])}

    def right_neighbours(text):  # distinct characters that *follow* each character
        out = {}
        for a, b in zip(text, text[1:]):
            out.setdefault(a, set()).add(b)
        return {c: len(s) for c, s in out.items()}

    assert ch02.check_continuation_counts(solution("continuation_counts"))
    assert not ch02.check_continuation_counts(raw_counts)
    assert "raw count" in capsys.readouterr().out
    assert not ch02.check_continuation_counts(right_neighbours)
    assert "expected" in capsys.readouterr().out


# ---------------------------------------------------------------- Kneser-Ney
def _kn(x, K, d, continuation=True, interpolate=True):
    c = _counts(x, K)
    left = (c > 0).sum(0).double() if continuation else c.sum(0)
    total = left.sum()
    p_low = (left - d).clamp(min=0) / total + d * (left > 0).sum() / total / K
    c_h = c.sum(1, keepdim=True)
    p = (c - d).clamp(min=0) / c_h.clamp(min=1)
    if interpolate:
        p = p + d * (c > 0).sum(1, keepdim=True) / c_h.clamp(min=1) * p_low
    return torch.where(c_h > 0, p, p_low.expand(K, K))


def test_kneser_ney_checker(capsys):
    assert ch02.check_kneser_ney_bigram(solution("kneser_ney_bigram"))
    assert "correct" in capsys.readouterr().out
    assert ch02.check_kneser_ney_bigram(_kn)  # the test's own right answer
    capsys.readouterr()
    raw = ch02.check_kneser_ney_bigram(lambda x, K, d: _kn(x, K, d, continuation=False))
    assert not raw  # raw unigram counts instead of continuation counts
    assert "expected" in capsys.readouterr().out
    lost = ch02.check_kneser_ney_bigram(lambda x, K, d: _kn(x, K, d, interpolate=False))
    assert not lost  # the discounted mass is dropped, not handed down
    assert "sums to" in capsys.readouterr().out


def test_kneser_ney_checker_matches_the_worked_example():
    """The chapter's hand computation on 'abaab' is what the checker's reference gives."""
    x = torch.tensor([0, 1, 0, 0, 1])
    p = _kn(x, 3, 0.5)
    torch.testing.assert_close(p[0], torch.tensor([10 / 27, 16 / 27, 1 / 27]).double())
    torch.testing.assert_close(p[2], torch.tensor([11 / 18, 5 / 18, 2 / 18]).double())


# ---------------------------------------------------------------- forward algorithm
def test_forward_checker_accepts_the_solution(capsys):
    assert ch02.check_forward(solution("hmm_log_likelihood"))
    assert "correct" in capsys.readouterr().out


def test_forward_checker_rejects_probability_space_underflow(capsys):
    def naive(log_pi, log_A, log_E, x):  # right recursion, but in probabilities: underflows
        pi, A, E = log_pi.exp().float(), log_A.exp().float(), log_E.exp().float()
        alpha = pi * E[:, x[0]]
        for t in range(1, len(x)):
            alpha = (alpha @ A) * E[:, x[t]]
        return torch.log(alpha.sum())

    assert not ch02.check_forward(naive)
    assert "log space" in capsys.readouterr().out


def test_forward_checker_rejects_transposed_transitions(capsys):
    forward = solution("hmm_log_likelihood")

    def transposed(log_pi, log_A, log_E, x):
        return forward(log_pi, log_A.T, log_E, x)

    assert not ch02.check_forward(transposed)
    assert "expected" in capsys.readouterr().out


def test_forward_checker_survives_a_crashing_answer(capsys):
    assert not ch02.check_forward(lambda *a: 1 / 0)
    assert "ZeroDivisionError" in capsys.readouterr().out
    with pytest.raises(TypeError, match="pass your function"):
        ch02.check_forward(3)
