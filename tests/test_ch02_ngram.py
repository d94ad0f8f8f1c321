"""Chapter 2: the n-gram models (add-k and interpolated Kneser-Ney) against hand and reference
values."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest
import torch

from arnb.models.ngram import NGramLM, count_distinct, tune_kneser_ney, unseen_fraction
from arnb.testing import (
    all_configurations,
    assert_normalized,
    assert_prompt_kept,
    assert_sampler_matches,
    perturbation_dependency,
)
from arnb.validation import validation


def ids_of(text: str, alphabet: str = "abc") -> torch.Tensor:
    return torch.tensor([alphabet.index(c) for c in text], dtype=torch.long)


# ---------------------------------------------------------------- hand-worked toy corpus
def test_kneser_ney_hand_worked_bigram():
    """Corpus "abaab" over {a, b, c}, bigram, one discount D = 1/2 (worked out in the chapter).

    bigram counts: ab 2, ba 1, aa 1; continuation counts of unigrams: a 2 (ba, aa), b 1 (ab), c 0.
    p1(a) = (2 - .5)/3 + (.5 * 2/3) / 3 = 11/18, p1(b) = 5/18, p1(c) = 2/18.
    p(.|a): c(a.) = 3, gamma = .5 * 2/3 -> a 10/27, b 16/27, c 1/27.
    p(.|b): c(b.) = 1, gamma = .5     -> a 29/36, b 5/36, c 2/36.
    p(.|c): unseen context -> p1.
    """
    lm = NGramLM(2, 3, discount=0.5).fit(ids_of("abaab")).double()  # exact fractions
    got = lm.next_log_probs(torch.tensor([[0], [1], [2]])).exp()
    want = torch.tensor(
        [[10 / 27, 16 / 27, 1 / 27], [29 / 36, 5 / 36, 2 / 36], [11 / 18, 5 / 18, 2 / 18]],
        dtype=torch.float64,
    )
    torch.testing.assert_close(got, want)
    # an empty context uses the lowest order
    torch.testing.assert_close(
        lm.next_log_probs(torch.zeros(1, 0, dtype=torch.long)).exp()[0], want[2]
    )
    # a sequence: p(a) p(b|a) p(c|b)
    lp = lm.log_prob(ids_of("abc").unsqueeze(0))
    assert float(lp) == pytest.approx(math.log(11 / 18 * 16 / 27 * 2 / 36))


def test_continuation_counts_not_raw_counts():
    """'b' is frequent but always follows 'a': its lower-order weight must be small."""
    lm = NGramLM(2, 3, discount=0.5).fit(ids_of("abababababc")).double()
    p_unseen_ctx = lm.next_log_probs(torch.tensor([[2]])).exp()[0]  # context 'c' never seen
    # continuation counts: a 1 (ba), b 1 (ab), c 1 (bc) -> equal despite raw counts 5, 5, 1
    torch.testing.assert_close(p_unseen_ctx, torch.full((3,), 1 / 3, dtype=torch.float64))


# ---------------------------------------------------------------- independent reference
def reference_kn(
    text: list[int], order: int, K: int, D: np.ndarray, context: list[int]
) -> np.ndarray:
    """Interpolated modified Kneser-Ney written from the formulas with dicts (slow, obvious).

    Raw counts at the top order, continuation counts N1+(. h w) below it.
    """
    grams = {
        m: Counter(tuple(text[i : i + m]) for i in range(len(text) - m + 1))
        for m in range(1, order + 1)
    }

    def counts(m):
        if m == order:
            return grams[m]
        cont = Counter()
        for g in grams[m + 1]:
            cont[g[1:]] += 1
        return cont

    def prob(w, h):
        m = len(h) + 1
        lower = 1.0 / K if m == 1 else prob(w, h[1:])
        cm = counts(m)
        row = {g[-1]: c for g, c in cm.items() if g[:-1] == tuple(h)}
        total = sum(row.values())
        if total == 0:
            return lower
        d = D[m - 1]
        disc = lambda c: d[min(c, 3) - 1]  # noqa: E731
        freed = sum(disc(c) for c in row.values())
        c = row.get(w, 0)
        return max(c - (disc(c) if c else 0), 0) / total + freed / total * lower

    # a short context (start of a sequence) stops the recursion early: orders 1..len+1
    h = context[-(order - 1) :] if order > 1 else []
    return np.array([prob(w, list(h)) for w in range(K)])


def test_kneser_ney_matches_reference_implementation():
    g = torch.Generator().manual_seed(3)
    K, order = 4, 3
    # a skewed random text so that counts 1, 2, 3+ all occur
    text = torch.multinomial(
        torch.tensor([0.5, 0.3, 0.15, 0.05]), 300, replacement=True, generator=g
    )
    D = np.array([[0.6, 1.1, 1.4], [0.5, 0.9, 1.6], [0.7, 1.2, 1.3]])
    lm = NGramLM(order, K, discount=tuple(map(tuple, D))).fit(text).double()
    for ctx in [[0, 1], [3, 3], [2, 0], [1, 3], [0], [3]]:
        want = reference_kn(text.tolist(), order, K, D, ctx)
        got = lm.next_log_probs(torch.tensor([ctx])).exp()[0].numpy()
        np.testing.assert_allclose(got, want, rtol=1e-10)


def test_estimated_discounts_follow_chen_goodman():
    g = torch.Generator().manual_seed(0)
    text = torch.multinomial(
        torch.tensor([0.4, 0.25, 0.15, 0.1, 0.06, 0.04]), 600, replacement=True, generator=g
    )
    lm = NGramLM(3, 6).fit(text)
    counts = Counter(tuple(text[i : i + 3].tolist()) for i in range(len(text) - 2))
    n = [sum(1 for c in counts.values() if c == j) for j in (1, 2, 3, 4)]
    assert min(n) > 0  # the corpus has counts 1, 2, 3 and 4
    y = n[0] / (n[0] + 2 * n[1])
    want = [1 - 2 * y * n[1] / n[0], 2 - 3 * y * n[2] / n[1], 3 - 4 * y * n[3] / n[2]]
    np.testing.assert_allclose(lm.discounts[2], np.clip(want, 0.05, [1, 2, 3]))


def test_add_k_closed_form():
    text = ids_of("abaab")
    lm = NGramLM(2, 3, smoothing="add-k", k=0.5).fit(text).double()
    # c(a.) = 3: ab 2, aa 1 -> (c + .5) / (3 + 1.5)
    got = lm.next_log_probs(torch.tensor([[0]])).exp()[0]
    torch.testing.assert_close(got, torch.tensor([1.5, 2.5, 0.5], dtype=torch.float64) / 4.5)
    # unseen context 'c' -> uniform; empty context -> unigram counts a 3, b 2 over 5
    torch.testing.assert_close(
        lm.next_log_probs(torch.tensor([[2]])).exp()[0],
        torch.full((3,), 1 / 3, dtype=torch.float64),
    )
    torch.testing.assert_close(
        lm.next_log_probs(torch.zeros(1, 0, dtype=torch.long)).exp()[0],
        torch.tensor([3.5, 2.5, 0.5], dtype=torch.float64) / 6.5,
    )


# ---------------------------------------------------------------- protocol properties
@pytest.mark.parametrize("smoothing", ["kneser-ney", "add-k"])
@pytest.mark.parametrize("order", [1, 2, 4])
def test_next_distribution_sums_to_one_for_any_prefix(smoothing, order):
    g = torch.Generator().manual_seed(order)
    K = 5
    text = torch.randint(0, K - 1, (400,), generator=g)  # symbol 4 never occurs in training
    lm = NGramLM(order, K, smoothing=smoothing).fit(text).double()
    for C in [0, 1, 3, 7]:
        ctx = torch.randint(0, K, (32, C), generator=g)
        p = lm.next_log_probs(ctx).exp()
        torch.testing.assert_close(p.sum(-1), torch.ones(32, dtype=torch.float64))
        assert bool((p > 0).all()), "an unseen symbol got probability zero"


@pytest.mark.parametrize("smoothing", ["kneser-ney", "add-k"])
def test_exact_normalisation_over_all_sequences(smoothing):
    g = torch.Generator().manual_seed(1)
    lm = NGramLM(3, 3, smoothing=smoothing).fit(torch.randint(0, 3, (60,), generator=g))
    lm.double()  # float64 results: the sum is exact to 1e-9
    assert_normalized(lm.log_prob, all_configurations(5, 3), atol=1e-9)


def test_markov_property_dependency_band():
    """The conditional at position i depends on exactly the order-1 previous symbols."""
    K, order, D = 3, 3, 7
    g = torch.Generator().manual_seed(2)
    # a short text: in a long uniform one every bigram would have the same continuation count
    # (all 27 trigrams occur), and the order-2 level would rightly ignore its context
    lm = NGramLM(order, K).fit(torch.randint(0, K, (30,), generator=g)).double()

    def conditionals(x):  # (B, D) -> (B, D, K): p(. | x_<i) for every i
        return torch.stack([lm.next_log_probs(x[:, :i]) for i in range(x.shape[1])], dim=1)

    dep = perturbation_dependency(conditionals, torch.tensor([0, 1, 2, 1, 0, 2, 1]), K, atol=1e-12)
    i, j = torch.meshgrid(torch.arange(D), torch.arange(D), indexing="ij")
    band = (j < i) & (j >= i - (order - 1))
    assert torch.equal(dep, band), f"dependency pattern\n{dep.int()}\nexpected\n{band.int()}"


def test_token_log_probs_and_sequence_nll_agree_with_next_log_probs():
    g = torch.Generator().manual_seed(4)
    K = 4
    lm = NGramLM(3, K).fit(torch.randint(0, K, (300,), generator=g)).double()
    x = torch.randint(0, K, (50,), generator=g)
    step = torch.stack([lm.next_log_probs(x[:i].unsqueeze(0))[0, x[i]] for i in range(len(x))])
    lp, state = lm.token_log_probs(x.unsqueeze(0))
    torch.testing.assert_close(lp[0], step)
    assert state.tolist() == [x[-2:].tolist()]  # the last order-1 ids
    assert lm.sequence_nll(x) == pytest.approx(float(-step.mean()))
    assert lm.sequence_nll(x, chunk=7) == pytest.approx(float(-step.mean()))  # state carried
    # forward: every conditional at once
    torch.testing.assert_close(lm(x.unsqueeze(0))[0].gather(-1, x[:, None])[:, 0], step)
    # longer contexts than order-1 are cut to the last order-1 ids
    long_ctx = torch.cat([torch.randint(0, K, (1, 10), generator=g), x[None, :2]], dim=1)
    torch.testing.assert_close(lm.next_log_probs(long_ctx), lm.next_log_probs(x[None, :2]))


def test_is_a_module_with_dtype_device_and_per_symbol_nll():
    lm = NGramLM(2, 3).fit(ids_of("abaabcab"))
    x = ids_of("abcab").unsqueeze(0).repeat(2, 1)
    assert isinstance(lm, torch.nn.Module) and lm.device == torch.device("cpu")
    lp = lm.log_prob(x)
    assert lp.dtype == torch.float32 and lp.shape == (2,)
    for dtype in (torch.uint8, torch.int32):  # any integer dtype
        torch.testing.assert_close(lm.log_prob(x.to(dtype)), lp)
    assert float(lm.nll(x)) == pytest.approx(-float(lp.sum()) / x.numel())
    assert lm.log_prob(x[:0]).shape == (0,)
    assert lm.state_dict() == {}  # counts are not parameters
    double = lm.double().log_prob(x)
    assert double.dtype == torch.float64 and lm.dtype == torch.float64
    torch.testing.assert_close(double.float(), lp)


def test_sampler_matches_exact_probabilities_and_keeps_prompt():
    g = torch.Generator().manual_seed(5)
    K, T = 3, 3
    lm = NGramLM(2, K).fit(torch.tensor([0, 0, 1, 0, 2, 1, 1, 0, 0, 2, 2, 0]))
    configs = all_configurations(T, K)
    samples = lm.sample(6000, generator=g, length=T)
    assert_sampler_matches(samples, lm.log_prob(configs), configs)
    prompt = torch.tensor([2, 1])
    s = lm.sample(10, prompt=prompt, generator=g, length=6)
    assert_prompt_kept(s, prompt)
    # same generator seed -> same samples
    a = lm.sample(4, generator=torch.Generator().manual_seed(9), length=8)
    b = lm.sample(4, generator=torch.Generator().manual_seed(9), length=8)
    assert torch.equal(a, b)


def test_prefix_statistics():
    x = ids_of("abcabcab")
    assert count_distinct(x, 1, 3) == 3
    assert count_distinct(x, 3, 3) == 3  # abc, bca, cab
    assert count_distinct(x, 9, 3) == 0
    assert unseen_fraction(x, ids_of("abcc"), 2, 3) == pytest.approx(1 / 3)  # ab bc seen, cc not


def test_tuning_uses_only_training_text():
    g = torch.Generator().manual_seed(6)
    text = torch.multinomial(torch.tensor([0.5, 0.3, 0.2]), 3000, replacement=True, generator=g)
    best = tune_kneser_ney(text, 3, orders=(1, 2, 3), scales=(0.8, 1.0))
    assert best["order"] in (1, 2, 3)
    assert len(best["discount"]) == best["order"]
    assert [o for o, _ in best["table"]] == [1, 2, 3]
    NGramLM(best["order"], 3, discount=tuple(map(tuple, best["discount"]))).fit(text)


# ---------------------------------------------------------------- bad input
def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="order must be an integer >= 1"):
        NGramLM(0, 5)
    with pytest.raises(ValueError, match="smoothing must be one of"):
        NGramLM(2, 5, smoothing="witten-bell")
    with pytest.raises(ValueError, match="empty"):
        NGramLM(2, 5).fit(torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match=r"values must lie in \[0, 4\], found range \[0, 7\]"):
        NGramLM(2, 5).fit(torch.tensor([0, 1, 7]))
    with validation(False):  # counting ids out of range would be silently wrong: always checked
        with pytest.raises(ValueError, match="values must lie in"):
            NGramLM(2, 5).fit(torch.tensor([0, 1, 7]))
    with pytest.raises(TypeError, match="integer category indices"):
        NGramLM(2, 5).fit(torch.tensor([0.0, 1.0]))
    with pytest.raises(RuntimeError, match="not fitted"):
        NGramLM(2, 5).next_log_probs(torch.zeros(1, 1, dtype=torch.long))
    lm = NGramLM(2, 5).fit(torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="context values must lie in"):
        lm.next_log_probs(torch.tensor([[5]]))
    with pytest.raises(ValueError, match="prompt values must lie in"):
        lm.sample(2, prompt=torch.tensor([9]), length=4)
    with pytest.raises(TypeError, match="length must be an int"):
        lm.sample(2)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, any\)"):
        lm.log_prob(torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="discounts must satisfy"):
        NGramLM(2, 5, discount=1.5).fit(torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="one entry per order"):
        NGramLM(2, 5, discount=(0.5,)).fit(torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="k > 0"):
        NGramLM(2, 5, smoothing="add-k", k=0)


def test_all_prefixes_of_a_tiny_model_enumerated():
    """Sum over every (context, next) pair of a bigram: each context row is a distribution."""
    lm = NGramLM(2, 3, discount=0.5).fit(ids_of("abaab"))
    for ctx in itertools.product(range(3), repeat=1):
        assert float(lm.next_log_probs(torch.tensor([ctx])).exp().sum()) == pytest.approx(1.0)


def test_characters_outside_the_vocabulary_are_rejected_before_counting():
    from arnb.tokenizers import CharTokenizer

    tok = CharTokenizer("abc ")
    lm = NGramLM(2, tok.vocab_size).fit(tok.encode("ab ca bc"))
    with pytest.raises(ValueError, match="outside the vocabulary"):  # the tokenizer says so
        lm.sequence_nll(tok.encode("abz"))
    with pytest.raises(ValueError, match=r"ids values must lie in \[0, 3\]"):
        lm.sequence_nll(torch.tensor([0, 1, 4]))


def test_training_figure_scores_the_ngram_on_the_curves_characters():
    import matplotlib

    matplotlib.use("Agg")
    from arnb.chapters.ch02_markov_to_rnn import plot_training
    from arnb.train import History

    g = torch.Generator().manual_seed(0)
    train_ids, val_ids = torch.randint(0, 3, (700,), generator=g).split([400, 300])
    val_ids = val_ids.clone()
    val_ids[:50] = 0  # an easy start: the probe scores differently from the whole text
    lm = NGramLM(2, 3).fit(train_ids)
    hist = History(eval_step=[10, 20], eval=[{"val_nll": 1.2}, {"val_nll": 1.1}])
    ax = plot_training({"net": hist}, lm, val_ids[:50])
    curve, dashed = ax.get_lines()
    assert list(curve.get_ydata()) == [1.2, 1.1]
    assert dashed.get_ydata()[0] == pytest.approx(lm.sequence_nll(val_ids[:50]))
    assert dashed.get_ydata()[0] != pytest.approx(lm.sequence_nll(val_ids))
