"""Self-checks for the exercises of chapter 2 (Markov chains, HMMs, RNNs).

See :mod:`arnb.exercises` for what every ``check_*`` function does.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch

from ..models.hmm import HMM, HMMConfig
from . import call, checker, report, require_callable


# ---------------------------------------------------------------- the HMM forward recursion
def _brute_force(log_pi, log_A, log_E, x) -> float:
    """log p(x) by summing over all S**T state paths (tiny cases only)."""
    S, T = log_pi.shape[0], len(x)
    terms = []
    for z in itertools.product(range(S), repeat=T):
        lp = log_pi[z[0]] + log_E[z[0], x[0]]
        for t in range(1, T):
            lp = lp + log_A[z[t - 1], z[t]] + log_E[z[t], x[t]]
        terms.append(lp)
    return float(torch.logsumexp(torch.stack(terms), 0))


def _random_hmm(S: int, K: int, g: torch.Generator, scale: float = 1.5):
    def log(shape):
        return torch.log_softmax(torch.randn(*shape, generator=g, dtype=torch.float64) * scale, -1)

    return log((S,)), log((S, S)), log((S, K))


@checker
def check_forward(fn: Callable) -> bool:
    """Exercise: ``fn(log_pi (S,), log_A (S, S), log_E (S, K), x (T,) long) -> log p(x)`` (a number).

    ``log_A[i, j] = log p(z_t = j | z_{t-1} = i)`` and ``log_E[s, k] = log p(x_t = k | z_t = s)``.
    Compared with a sum over all state paths on tiny HMMs, then run on a text of 2,000 symbols,
    where multiplying probabilities without logs underflows to zero.
    """
    require_callable(fn, "check_forward(hmm_log_likelihood)")
    g = torch.Generator().manual_seed(0)
    problems = []
    cases = []
    for S, K, T in [(2, 2, 1), (2, 3, 4), (3, 2, 5), (4, 3, 4)]:
        log_pi, log_A, log_E = _random_hmm(S, K, g)
        x = torch.randint(0, K, (T,), generator=g)
        cases.append(
            (f"S={S}, K={K}, T={T}", log_pi, log_A, log_E, x, _brute_force(log_pi, log_A, log_E, x))
        )
    # a long text: the reference is the book's own log-space forward algorithm
    log_pi, log_A, log_E = _random_hmm(5, 4, g)
    x = torch.randint(0, 4, (2000,), generator=g)
    hmm = HMM(HMMConfig(5, 4)).double()
    with torch.no_grad():
        hmm.init_logits.copy_(log_pi)
        hmm.trans_logits.copy_(log_A)
        hmm.emit_logits.copy_(log_E)
        want_long = float(hmm.log_prob(x.unsqueeze(0)))
    cases.append(("long text, T=2000 (underflow)", log_pi, log_A, log_E, x, want_long))
    for name, log_pi, log_A, log_E, x, want in cases:
        got, err = call(fn, log_pi.clone(), log_A.clone(), log_E.clone(), x.clone())
        if err:
            problems.append(f"{name}: {err}")
            continue
        try:
            got = float(got)
        except (TypeError, ValueError):
            problems.append(f"{name}: expected one number, got {type(got).__name__}")
            continue
        if not math.isfinite(got):
            problems.append(f"{name}: got {got}; keep the recursion in log space (logsumexp)")
        elif abs(got - want) > 1e-3 * max(1.0, abs(want)):
            problems.append(f"{name}: expected {want:.5f}, got {got:.5f}")
    return report("HMM forward algorithm", problems)


def forward_reference(
    log_pi: torch.Tensor, log_A: torch.Tensor, log_E: torch.Tensor, x: torch.Tensor
) -> float:
    """A reference solution of :func:`check_forward` (the notebook shows its own)."""
    log_alpha = log_pi + log_E[:, x[0]]
    for t in range(1, len(x)):
        log_alpha = torch.logsumexp(log_alpha.unsqueeze(1) + log_A, dim=0) + log_E[:, x[t]]
    return float(torch.logsumexp(log_alpha, 0))


# ---------------------------------------------------------------- Kneser-Ney continuation counts
def _continuation(text: str) -> dict[str, int]:
    left = {}
    for a, b in zip(text, text[1:]):
        left.setdefault(b, set()).add(a)
    return {c: len(v) for c, v in left.items()}


@checker
def check_continuation_counts(fn: Callable[[str], dict]) -> bool:
    """Exercise: ``fn(text) -> {char: N1+(. char)}``, the number of *distinct* characters that
    directly precede each character somewhere in ``text`` (characters never preceded may be left
    out or given 0)."""
    require_callable(fn, "check_continuation_counts(continuation_counts)")
    problems = []
    cases = [
        "abaab",
        "abababababc",
        "San Francisco, Francisco, Francisco",
        "aaaa",
        "x",
        "to be or not to be, that is the question",
    ]
    for text in cases:
        want = _continuation(text)
        got, err = call(fn, text)
        if err:
            problems.append(f"{text!r}: {err}")
            continue
        if not isinstance(got, dict):
            problems.append(f"{text!r}: expected a dict, got {type(got).__name__}")
            continue
        got = {k: v for k, v in got.items() if v}
        if got != want:
            wrong = sorted(c for c in set(got) | set(want) if got.get(c, 0) != want.get(c, 0))
            detail = ", ".join(
                f"{c!r}: expected {want.get(c, 0)}, got {got.get(c, 0)}" for c in wrong[:4]
            )
            raw = {c: text[1:].count(c) for c in wrong[:1]}
            hint = (
                " (that is the raw count: count distinct left neighbours)"
                if wrong and got.get(wrong[0]) == raw.get(wrong[0])
                else ""
            )
            problems.append(f"{text!r}: {detail}{hint}")
    return report("continuation counts", problems)
