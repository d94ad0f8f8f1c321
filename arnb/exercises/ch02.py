"""Self-checks for the exercises of chapter 2 (Markov chains, HMMs, RNNs).

See :mod:`arnb.exercises` for what every ``check_*`` function does.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch

from ..models.hmm import HMM, HMMConfig
from ..models.ngram import NGramLM
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
    """Exercise: ``fn(log_pi (S,), log_A (S, S), log_E (S, K), x (T,) long) -> log p(x)`` (a
    number).

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


# ---------------------------------------------------------------- bigram tables: add-k, Kneser-Ney
def _bigram_counts(x: torch.Tensor, K: int) -> torch.Tensor:
    c = torch.zeros(K, K, dtype=torch.float64)
    for a, b in zip(x.tolist(), x[1:].tolist()):
        c[a, b] += 1
    return c


def _bigram_cases(g: torch.Generator) -> list[tuple[str, torch.Tensor, int]]:
    """Toy corpora: the chapter's worked example, a symbol never seen, random texts."""
    cases = [
        ("'abaab' over {a, b, c}", torch.tensor([0, 1, 0, 0, 1]), 3),
        ("'abcab' over {a, b, c, d}", torch.tensor([0, 1, 2, 0, 1]), 4),
    ]
    for K, T in [(4, 40), (6, 25)]:
        cases.append((f"random text, K={K}, T={T}", torch.randint(0, K, (T,), generator=g), K))
    return cases


def _check_table(name, fn, cases, want_of, *args) -> list[str]:
    problems = []
    for label, x, K in cases:
        want = want_of(x, K)
        got, err = call(fn, x.clone(), K, *args)
        if err:
            problems.append(f"{label}: {err}")
            continue
        got = torch.as_tensor(got).double()
        if got.shape != (K, K):
            problems.append(f"{label}: expected a ({K}, {K}) table P[h, w], got {tuple(got.shape)}")
            continue
        sums = got.sum(1)
        if not torch.allclose(sums, torch.ones(K, dtype=torch.float64), atol=1e-6):
            bad = int((sums - 1).abs().argmax())
            problems.append(
                f"{label}: row h={bad} sums to {float(sums[bad]):.4f}, not 1 "
                "(each row is a distribution over the next symbol)"
            )
        elif not torch.allclose(got, want, atol=1e-6):
            h, w = divmod(int((got - want).abs().argmax()), K)
            problems.append(
                f"{label}: P[{h}, {w}] = p({w} | {h}): expected {float(want[h, w]):.5f}, "
                f"got {float(got[h, w]):.5f}"
            )
    return problems


@checker
def check_addk_bigram(fn: Callable) -> bool:
    """Exercise: ``fn(x (T,) long, K, k) -> P (K, K)``, ``P[h, w] = (c(hw) + k) / (c(h) + k K)``
    with ``c(h) = sum_w c(hw)``, the times ``h`` is followed by a symbol in ``x``."""
    require_callable(fn, "check_addk_bigram(addk_bigram)")
    cases = _bigram_cases(torch.Generator().manual_seed(0))
    problems = []
    for k in (1.0, 0.05):

        def want_of(x, K, k=k):
            c = _bigram_counts(x, K)
            return (c + k) / (c.sum(1, keepdim=True) + k * K)

        problems += [f"k={k}, {p}" for p in _check_table("add-k", fn, cases, want_of, k)]
    return report("add-k bigram", problems)


@checker
def check_kneser_ney_bigram(fn: Callable) -> bool:
    """Exercise: ``fn(x (T,) long, K, discount) -> P (K, K)``, ``P[h, w] = p_KN(w | h)``:
    interpolated Kneser-Ney with one discount ``D`` for the bigrams and for the continuation
    unigram, which interpolates with the uniform distribution (the chapter's worked example).

    Compared with :class:`arnb.models.ngram.NGramLM` ``(2, K, discount=D)`` on toy corpora; every
    row must sum to one.
    """
    require_callable(fn, "check_kneser_ney_bigram(kneser_ney_bigram)")
    cases = _bigram_cases(torch.Generator().manual_seed(1))
    problems = []
    for d in (0.5, 0.8):

        def want_of(x, K, d=d):
            lm = NGramLM(2, K, discount=d).fit(x).double()
            return torch.stack([lm.next_log_probs(torch.tensor([h])).exp() for h in range(K)])

        found = _check_table("Kneser-Ney", fn, cases, want_of, d)
        problems += [f"D={d}, {p}" for p in found]
    return report("Kneser-Ney bigram", problems)
