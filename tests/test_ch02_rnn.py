"""Chapter 2: recurrent character LMs: causality, normalisation, cached sampling, TBPTT batches."""

from __future__ import annotations

import pytest
import torch

from arnb.data.text import StreamBatches
from arnb.models.rnn_lm import CharRNN, RNNConfig, TBPTTLoss
from arnb.testing import (
    all_configurations,
    assert_causal,
    assert_normalized,
    assert_prompt_kept,
    assert_sampler_matches,
    perturbation_dependency,
)
from arnb.train import Schedule, train

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


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
    a = model.sample(6, prompt=prompt, generator=torch.Generator().manual_seed(7), length=12)
    b = model.sample(
        6, prompt=prompt, generator=torch.Generator().manual_seed(7), length=12, use_cache=False
    )
    assert torch.equal(a, b)
    assert_prompt_kept(a, prompt)


def test_sampler_matches_exact_probabilities():
    model = tiny_rnn("gru", K=3, seed=3)
    configs = all_configurations(3, 3)
    with torch.no_grad():
        lp = model.log_prob(configs)
    samples = model.sample(6000, generator=torch.Generator().manual_seed(0), length=3)
    assert_sampler_matches(samples, lp, configs)


def test_sequence_nll_carries_state_exactly_across_chunks():
    model = tiny_rnn("lstm", K=4, seed=4)
    x = torch.randint(0, 4, (300,), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        whole = -float(model.log_prob(x.unsqueeze(0))) / len(x)
    assert model.sequence_nll(x, chunk=17) == pytest.approx(whole, rel=1e-5)


def test_stream_batches_are_consecutive_chunks():
    ids = torch.arange(1000) % 7
    b = StreamBatches(ids, batch_size=4, chunk=10, seed=0)
    chunks = list(b)
    assert len(chunks) == len(b) and chunks[0][1] and not any(c[1] for c in chunks[1:])
    streams = torch.cat([c[0] for c in chunks], dim=1)
    assert streams.shape == (4, len(b) * 10)
    # each row continues where its previous chunk stopped
    assert torch.equal((streams[:, 1:] - streams[:, :-1]) % 7, torch.ones_like(streams[:, 1:]))


def test_tbptt_loss_over_chunks_equals_one_pass():
    """Carrying (hidden, last symbol) across chunks scores a stream exactly as one pass does."""
    model = tiny_rnn("lstm", K=4, seed=5)
    ids = torch.randint(0, 4, (300,), generator=torch.Generator().manual_seed(2))
    loss_fn = TBPTTLoss()
    chunks = list(StreamBatches(ids, batch_size=2, chunk=7))
    with torch.no_grad():
        losses = torch.tensor([float(loss_fn(model, b)) for b in chunks])
        stream = torch.cat([c[0] for c in chunks], dim=1)
        want = model.log_prob(stream) / stream.shape[1]
    assert float(losses.mean()) == pytest.approx(-float(want.mean()), rel=1e-5)


def test_tbptt_training_learns_a_long_period():
    """A period-9 text where the next symbol depends on more than a chunk's worth of history
    only through the carried state: with chunks of 4 the model must carry state to be exact."""
    pattern = torch.tensor([0, 1, 0, 2, 0, 1, 1, 2, 2])
    ids = pattern.repeat(400)
    torch.manual_seed(0)
    model = CharRNN(RNNConfig(vocab_size=3, cell="gru", embed=8, hidden=32, layers=1))
    batches = StreamBatches(ids, batch_size=16, chunk=4)
    train(model, TBPTTLoss(), batches, Schedule(steps=200, lr=0.03), progress=False)
    assert model.sequence_nll(ids[:450]) < 0.15


def test_integer_dtypes_float64_and_empty_batches():
    model = tiny_rnn("gru", K=4, seed=6)
    x = torch.randint(0, 4, (3, 6), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = model.log_prob(x)
        assert want.dtype == torch.float32
        for dtype in (torch.uint8, torch.int32, torch.int16):
            torch.testing.assert_close(model.log_prob(x.to(dtype)), want)
        assert model.log_prob(x[:0]).shape == (0,)
        double = model.double().log_prob(x)
    assert double.dtype == torch.float64
    torch.testing.assert_close(double.float(), want, rtol=1e-5, atol=1e-5)


def test_nll_is_mean_nats_per_symbol():
    model = tiny_rnn("rnn", K=3, seed=7)
    x = torch.randint(0, 3, (4, 5), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert float(model.nll(x)) == pytest.approx(-float(model.log_prob(x).sum()) / 20)


def test_bad_input():
    with pytest.raises(ValueError, match="cell must be one of"):
        CharRNN(RNNConfig(vocab_size=5, cell="transformer"))
    model = tiny_rnn("rnn", K=3)
    with pytest.raises(ValueError, match="values must lie in"):
        model.log_prob(torch.tensor([[0, 1, 3]]))
    with pytest.raises(TypeError, match="integer category"):
        model.log_prob(torch.tensor([[0.0, 1.0]]))
    with pytest.raises(ValueError, match="too short"):
        StreamBatches(torch.arange(20) % 3, batch_size=8, chunk=10)
    with pytest.raises(TypeError, match="length must be an int"):
        model.sample(2)  # a sequence model needs the length of its samples
    with pytest.raises(ValueError, match="prompt values must lie in"):
        model.sample(2, prompt=torch.tensor([0, 3]), length=4)
    with pytest.raises(ValueError, match="prompt must have shape"):
        model.sample(2, prompt=torch.tensor([0, 1, 2, 0, 1]), length=4)
    with pytest.raises(TypeError, match="takes 2 positional"):
        model.sample(2, 4)  # length is keyword-only
