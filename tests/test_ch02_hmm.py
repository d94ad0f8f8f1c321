"""Chapter 2: the HMM's forward algorithm against brute force, normalisation, sampling, bad
input."""

from __future__ import annotations

import itertools

import pytest
import torch

from arnb.data.text import StreamBatches
from arnb.models.hmm import HMM, HMMConfig, log_matmul_exp
from arnb.models.rnn_lm import TBPTTLoss
from arnb.testing import (
    all_configurations,
    assert_causal,
    assert_normalized,
    assert_prompt_kept,
    assert_sampler_matches,
    perturbation_dependency,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def tiny_hmm(S=3, K=2, scale=1.5, seed=0) -> HMM:
    torch.manual_seed(seed)
    hmm = HMM(HMMConfig(S, K))
    with torch.no_grad():
        for p in hmm.parameters():
            p.copy_(torch.randn(p.shape) * scale)
    return hmm


def brute_force_log_prob(hmm: HMM, x: torch.Tensor) -> torch.Tensor:
    """log sum over all S**T state paths of pi(z0) E(z0,x0) prod_t A(z_{t-1},z_t) E(z_t,x_t)."""
    pi = torch.softmax(hmm.init_logits.double(), -1)
    A = torch.softmax(hmm.trans_logits.double(), -1)
    E = torch.softmax(hmm.emit_logits.double(), -1)
    out = []
    for row in x.tolist():
        total = torch.zeros((), dtype=torch.float64)
        for z in itertools.product(range(hmm.num_states), repeat=len(row)):
            p = pi[z[0]] * E[z[0], row[0]]
            for t in range(1, len(row)):
                p = p * A[z[t - 1], z[t]] * E[z[t], row[t]]
            total = total + p
        out.append(total.log())
    return torch.stack(out)


def test_forward_equals_brute_force_enumeration():
    hmm = tiny_hmm(S=3, K=2)
    x = all_configurations(4, 2)
    with torch.no_grad():
        got = hmm.log_prob(x).double()
    torch.testing.assert_close(got, brute_force_log_prob(hmm, x), rtol=1e-5, atol=1e-5)


def test_log_matmul_exp_matches_logsumexp():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 5, generator=g) * 30, torch.randn(5, 6, generator=g) * 3
    want = torch.logsumexp(a.double().unsqueeze(-1) + b.double().unsqueeze(0), dim=1)
    torch.testing.assert_close(log_matmul_exp(a, b).double(), want, rtol=1e-5, atol=1e-5)


def test_normalised_over_all_sequences_and_every_conditional():
    hmm = tiny_hmm(S=4, K=3, seed=1)
    configs = all_configurations(5, 3)
    assert_normalized(hmm.log_prob, configs, atol=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(hmm(configs).exp().sum(-1), torch.ones(len(configs), 5))


def test_conditionals_are_causal():
    hmm = tiny_hmm(S=4, K=3, seed=2)
    dep = perturbation_dependency(hmm, torch.tensor([0, 2, 1, 1, 0, 2]), 3, atol=1e-5)
    assert_causal(dep)
    assert dep[5, :5].all(), "an HMM conditional should depend on the whole past"


def test_chunked_filtering_equals_one_pass_and_long_texts_do_not_underflow():
    hmm = tiny_hmm(S=5, K=4, seed=3)
    x = torch.randint(0, 4, (1500,), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        whole = -float(hmm.log_prob(x.unsqueeze(0))) / len(x)
    assert whole == pytest.approx(hmm.sequence_nll(x, chunk=7), rel=1e-5)
    assert 0 < whole < 10


def test_extreme_parameters_give_finite_loss_and_gradients():
    hmm = tiny_hmm(S=4, K=3, scale=40.0, seed=4)
    x = torch.randint(0, 3, (2, 50), generator=torch.Generator().manual_seed(1))
    loss = hmm.nll(x)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in hmm.parameters())


def test_samplers_match_exact_probabilities():
    hmm = tiny_hmm(S=3, K=3, seed=5)
    configs = all_configurations(3, 3)
    with torch.no_grad():
        lp = hmm.log_prob(configs)
    assert_sampler_matches(
        hmm.sample(6000, generator=torch.Generator().manual_seed(0), length=3), lp, configs
    )
    x, z = hmm.sample_joint(6000, 3, generator=torch.Generator().manual_seed(1))
    assert_sampler_matches(x, lp, configs)
    assert z.shape == x.shape and int(z.max()) < 3
    prompt = torch.tensor([2, 0])
    assert_prompt_kept(
        hmm.sample(5, prompt=prompt, generator=torch.Generator().manual_seed(2), length=6), prompt
    )


def test_gradient_training_lowers_the_exact_nll():
    truth = tiny_hmm(S=2, K=3, scale=2.5, seed=6)
    x, _ = truth.sample_joint(256, 12, generator=torch.Generator().manual_seed(3))
    model = HMM(HMMConfig(2, 3))
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    with torch.no_grad():
        start = float(model.nll(x))
    for _ in range(25):
        opt.zero_grad()
        model.nll(x).backward()
        opt.step()
    with torch.no_grad():
        fitted, best = float(model.nll(x)), float(truth.nll(x))
    # nll is per symbol: gain at least one nat per sequence of 12
    assert best < fitted < start - 1.0 / 12, (best, fitted, start)


def test_tbptt_loss_with_hmm_carries_the_filter():
    hmm = tiny_hmm(S=3, K=4, seed=7)
    ids = torch.randint(0, 4, (200,), generator=torch.Generator().manual_seed(4))
    batches = StreamBatches(ids, batch_size=1, chunk=10)
    loss_fn = TBPTTLoss()
    chunks = list(batches)  # one epoch (each pass over StreamBatches moves the offset)
    with torch.no_grad():
        losses = [float(loss_fn(hmm, b)) for b in chunks]
    stream = torch.cat([c[0] for c in chunks], dim=1)
    with torch.no_grad():
        want = -float(hmm.log_prob(stream)) / stream.numel()
    assert sum(losses) / len(losses) == pytest.approx(want, rel=1e-5)


def test_integer_dtypes_float64_and_empty_batches():
    hmm = tiny_hmm(S=3, K=4, seed=8)
    x = torch.randint(0, 4, (3, 6), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        want = hmm.log_prob(x)
        assert want.dtype == torch.float32
        for dtype in (torch.uint8, torch.int32):
            torch.testing.assert_close(hmm.log_prob(x.to(dtype)), want)
        assert hmm.log_prob(x[:0]).shape == (0,)
        double = hmm.double()
        got = double.log_prob(x)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, brute_force_log_prob(double, x), rtol=1e-10, atol=1e-10)


def test_bad_input():
    hmm = tiny_hmm(S=3, K=2)
    with pytest.raises(ValueError, match="values must lie in"):
        hmm.log_prob(torch.tensor([[0, 1, 2]]))
    with pytest.raises(TypeError, match="integer category"):
        hmm.log_prob(torch.tensor([[0.0, 1.0]]))
    with pytest.raises(ValueError, match="num_states >= 1"):
        HMM(HMMConfig(0, 5))
    with pytest.raises(ValueError, match="non-empty 1-D"):
        hmm.sequence_nll(torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="prompt values must lie in"):
        hmm.sample(2, prompt=torch.tensor([2]), length=3)
    with pytest.raises(TypeError, match="length must be an int"):
        hmm.sample(2, length=2.5)
