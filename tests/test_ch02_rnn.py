"""Chapter 2: recurrent character LMs: causality, normalisation, cached sampling, TBPTT batches."""

from __future__ import annotations

import pytest
import torch

from arnb.models.rnn_lm import CharRNN, RNNConfig, StreamBatches, TBPTTLoss
from arnb.testing import (
    all_configurations,
    assert_causal,
    assert_normalized,
    assert_prompt_kept,
    assert_sampler_matches,
    perturbation_dependency,
)
from arnb.train import train


@pytest.fixture(autouse=True)
def _one_thread():
    """Small sequential ops: one thread avoids thread-synchronisation stalls on busy machines."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def tiny_rnn(cell: str, K: int = 3, seed: int = 0) -> CharRNN:
    torch.manual_seed(seed)
    model = CharRNN(RNNConfig(vocab_size=K, cell=cell, embed=8, hidden=12, layers=2)).eval()
    with torch.no_grad():  # larger weights than the default init: sharper, more varied conditionals
        for p in model.parameters():
            p.mul_(3.0)
    return model


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_causal_and_normalised(cell):
    model = tiny_rnn(cell)
    # atol: a batch of 2 and a batch of 1 may round differently in the last bit
    with torch.no_grad():
        dep = perturbation_dependency(model, torch.tensor([0, 2, 1, 1, 0, 2]), 3, atol=1e-5)
        assert_causal(dep)
        assert dep[5, :5].all(), "the last conditional should see the whole past"
        assert_normalized(model.log_prob, all_configurations(5, 3), atol=1e-5)


def test_log_prob_against_torch_distributions_step_by_step():
    model = tiny_rnn("lstm", K=4, seed=1)
    x = torch.randint(0, 4, (3, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = torch.zeros(3)
        for t in range(9):  # uncached: re-read the prefix, take the last step's logits
            logits, _ = model.step(model.shift(x[:, : t + 1]))
            want += torch.distributions.Categorical(logits=logits[:, -1]).log_prob(x[:, t])
        torch.testing.assert_close(model.log_prob(x), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_cached_and_uncached_sampling_agree(cell):
    model = tiny_rnn(cell, K=5, seed=2)
    prompt = torch.tensor([3, 1])
    a = model.sample(6, 12, prompt=prompt, generator=torch.Generator().manual_seed(7))
    b = model.sample(
        6, 12, prompt=prompt, generator=torch.Generator().manual_seed(7), use_cache=False
    )
    assert torch.equal(a, b)
    assert_prompt_kept(a, prompt)


def test_sampler_matches_exact_probabilities():
    model = tiny_rnn("gru", K=3, seed=3)
    configs = all_configurations(3, 3)
    with torch.no_grad():
        lp = model.log_prob(configs)
    samples = model.sample(6000, 3, generator=torch.Generator().manual_seed(0))
    assert_sampler_matches(samples, lp, configs)


def test_sequence_nll_carries_state_exactly_across_chunks():
    model = tiny_rnn("lstm", K=4, seed=4)
    x = torch.randint(0, 4, (300,), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        whole = -float(model.log_prob(x.unsqueeze(0))) / len(x)
    assert model.sequence_nll(x, chunk=17) == pytest.approx(whole, rel=1e-5)


def test_stream_batches_are_consecutive_chunks():
    ids = torch.arange(1000) % 7
    b = StreamBatches(ids, batch_size=4, chunk=10, bos=7, seed=0)
    chunks = list(b)
    assert len(chunks) == len(b) and chunks[0][2] and not any(c[2] for c in chunks[1:])
    inputs = torch.cat([c[0] for c in chunks], dim=1)
    targets = torch.cat([c[1] for c in chunks], dim=1)
    assert (inputs[:, 0] == 7).all()  # every stream starts with BOS
    assert torch.equal(inputs[:, 1:], targets[:, :-1])  # inputs are the targets shifted by one
    assert torch.equal((targets[:, 1:] - targets[:, :-1]) % 7, torch.ones_like(targets[:, 1:]))


def test_tbptt_training_learns_a_long_period():
    """A period-9 text where the next symbol depends on more than a chunk's worth of history
    only through the carried state: with chunks of 4 the model must carry state to be exact."""
    pattern = torch.tensor([0, 1, 0, 2, 0, 1, 1, 2, 2])
    ids = pattern.repeat(400)
    torch.manual_seed(0)
    model = CharRNN(RNNConfig(vocab_size=3, cell="gru", embed=8, hidden=32, layers=1))
    batches = StreamBatches(ids, batch_size=16, chunk=4, bos=3)
    train(model, TBPTTLoss(), batches, steps=200, lr=0.03, progress=False)
    assert model.sequence_nll(ids[:450]) < 0.15


def test_bad_input():
    with pytest.raises(ValueError, match="cell must be one of"):
        CharRNN(RNNConfig(vocab_size=5, cell="transformer"))
    model = tiny_rnn("rnn", K=3)
    with pytest.raises(ValueError, match="values must lie in"):
        model.log_prob(torch.tensor([[0, 1, 3]]))
    with pytest.raises(TypeError, match="integer category"):
        model.log_prob(torch.tensor([[0.0, 1.0]]))
    with pytest.raises(ValueError, match="too short"):
        StreamBatches(torch.arange(20) % 3, batch_size=8, chunk=10, bos=3)
