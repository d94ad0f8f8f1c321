"""Chapter 2: the exercise checkers accept right answers and reject wrong ones."""

from __future__ import annotations

import pytest
import torch

from arnb.exercises.ch02 import check_continuation_counts, check_forward, forward_reference


def test_forward_checker_accepts_reference(capsys):
    assert check_forward(forward_reference)
    assert "correct" in capsys.readouterr().out


def test_forward_checker_rejects_probability_space_underflow(capsys):
    def naive(log_pi, log_A, log_E, x):  # right recursion, but in probabilities: underflows
        pi, A, E = log_pi.exp().float(), log_A.exp().float(), log_E.exp().float()
        alpha = pi * E[:, x[0]]
        for t in range(1, len(x)):
            alpha = (alpha @ A) * E[:, x[t]]
        return torch.log(alpha.sum())

    assert not check_forward(naive)
    assert "log space" in capsys.readouterr().out


def test_forward_checker_rejects_transposed_transitions(capsys):
    def transposed(log_pi, log_A, log_E, x):
        return forward_reference(log_pi, log_A.T, log_E, x)

    assert not check_forward(transposed)
    assert "expected" in capsys.readouterr().out


def test_forward_checker_survives_a_crashing_answer(capsys):
    assert not check_forward(lambda *a: 1 / 0)
    assert "ZeroDivisionError" in capsys.readouterr().out
    with pytest.raises(TypeError, match="pass your function"):
        check_forward(3)


def test_continuation_checker(capsys):
    def right(text):
        out = {}
        for a, b in zip(text, text[1:]):
            out.setdefault(b, set()).add(a)
        return {c: len(s) for c, s in out.items()}

    def raw_counts(text):
        return {c: text[1:].count(c) for c in set(text[1:])}

    assert check_continuation_counts(right)
    assert not check_continuation_counts(raw_counts)
    assert "raw count" in capsys.readouterr().out
