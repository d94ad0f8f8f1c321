"""The shared test probes, proven on a model whose probabilities are known: a Markov chain.

Each probe must pass on the correct model *and fail on a deliberately broken one*; a probe that
cannot fail proves nothing.
"""

import pytest
import torch

from arnb.models import MarkovChain
from arnb.protocol import ARModel
from arnb.sampling import ancestral_sample, filter_logits, sample_categorical
from arnb.testing import (
    all_configurations,
    assert_causal,
    assert_normalized,
    assert_prompt_kept,
    assert_sampler_matches,
    dependency_matrix,
    perturbation_dependency,
    sampler_p_value,
)
from arnb.validation import as_indices


@pytest.fixture
def chain():
    torch.manual_seed(0)
    return MarkovChain(num_classes=3, length=4)


def test_follows_the_protocol(chain):
    assert isinstance(chain, ARModel)
    x = chain.sample(5, generator=torch.Generator().manual_seed(0))
    assert x.shape == (5, 4) and x.dtype == torch.long
    assert chain.log_prob(x).shape == (5,)


def test_log_prob_against_independent_computation(chain):
    x = torch.tensor([[0, 2, 1, 1], [2, 2, 0, 1]])
    p0 = torch.softmax(chain.initial, -1)
    pt = torch.softmax(chain.transition, -1)
    for row, lp in zip(x, chain.log_prob(x)):
        expected = torch.log(p0[row[0]]) + sum(
            torch.log(pt[row[i - 1], row[i]]) for i in range(1, 4)
        )
        assert lp.item() == pytest.approx(expected.item(), abs=1e-5)


def test_normalization_probe(chain):
    configs = all_configurations(4, 3)
    assert configs.shape == (81, 4)
    assert_normalized(chain.log_prob, configs)
    with pytest.raises(AssertionError, match="sum to"):  # a broken model: one term dropped
        assert_normalized(lambda x: chain.log_prob(x) + 0.1, configs)


def test_causality_probe(chain):
    x = torch.nn.functional.one_hot(torch.tensor([1, 0, 2, 1]), 3).float()
    dep = dependency_matrix(chain, x)  # inputs are (position, class): 4 * 3 columns
    order = torch.arange(4).repeat_interleave(3)
    assert_causal(dep, order)
    assert dep[2, 3:6].all()  # the conditional of x_2 does see x_1

    def leaky(inp):  # sees the next symbol: must be caught
        return chain(inp) + torch.roll(inp, -1, dims=1)

    with pytest.raises(AssertionError, match="not causal"):
        assert_causal(dependency_matrix(leaky, x), order)


def test_perturbation_probe(chain):
    x = torch.tensor([1, 0, 2, 1])
    dep = perturbation_dependency(chain, x, num_classes=3)
    assert_causal(dep)
    assert dep[1, 0] and not dep[1, 2]
    with pytest.raises(AssertionError, match="not causal"):
        assert_causal(perturbation_dependency(lambda t: chain(t.roll(-1, dims=1)), x, 3))


def test_perturbation_probe_ignores_batch_size_round_off(chain):
    # A GPU may compute a batch of another size with other kernels: outputs that move with the
    # batch size alone are no dependence on any input.
    x = torch.tensor([1, 0, 2, 1])
    dep = perturbation_dependency(lambda t: chain(t) + 1e-3 * t.shape[0], x, 3, atol=1e-6)
    assert_causal(dep)
    assert torch.equal(dep, perturbation_dependency(chain, x, 3, atol=1e-6))


def test_perturbation_probe_computes_without_tf32(chain, tf32):
    """TF32's rounding (about 1e-3) would pass for a dependence at any useful atol: the probe
    runs the model with TF32 off, and restores the flags after."""
    seen = []

    def f(t):
        seen.append(tf32())
        return chain(t)

    perturbation_dependency(f, torch.tensor([1, 0, 2]), 3)
    assert seen and set(seen) == {(False, False)}
    assert tf32() == (True, True)


def test_sampler_probe(chain):
    configs = all_configurations(4, 3)
    with torch.no_grad():
        logp = chain.log_prob(configs)
    samples = chain.sample(20000, generator=torch.Generator().manual_seed(1))
    assert_sampler_matches(samples, logp, configs)
    # samples from another chain must be rejected
    other = MarkovChain(3, 4)
    wrong = other.sample(20000, generator=torch.Generator().manual_seed(2))
    assert sampler_p_value(wrong, logp, configs) < 1e-6


def test_prompt_is_kept_and_sampling_is_seeded(chain):
    prompt = torch.tensor([2, 0])
    a = chain.sample(50, prompt=prompt, generator=torch.Generator().manual_seed(4))
    b = chain.sample(50, prompt=prompt, generator=torch.Generator().manual_seed(4))
    assert_prompt_kept(a, prompt)
    assert torch.equal(a, b)
    with pytest.raises(AssertionError, match="changed the prompt"):
        assert_prompt_kept(a, torch.tensor([1, 1]))


def test_sample_categorical_inverse_cdf():
    logits = torch.log(torch.tensor([[0.2, 0.3, 0.5]])).expand(4, 3)
    u = torch.tensor([0.0, 0.19, 0.21, 0.99])
    assert sample_categorical(logits, uniform=u).tolist() == [0, 0, 1, 2]
    # a category with zero probability is never drawn, even at the edges of [0, 1)
    masked = torch.tensor([[float("-inf"), 0.0, float("-inf")]]).expand(3, 3)
    assert sample_categorical(masked, uniform=torch.tensor([0.0, 0.5, 0.9999999])).tolist() == [
        1,
        1,
        1,
    ]


def test_filter_logits():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, top_k=2)[0, 2:]).all()
    kept = ~torch.isinf(filter_logits(logits, top_p=0.75))
    assert kept.tolist() == [[True, True, False, False]]  # 0.5 < 0.75, 0.5 + 0.3 >= 0.75
    assert (~torch.isinf(filter_logits(logits, top_p=0.1))).sum() == 1  # the top one always stays
    probs = torch.softmax(filter_logits(logits, temperature=0.5), -1)
    expected = torch.tensor([0.5, 0.3, 0.15, 0.05]) ** 2
    assert torch.allclose(probs[0], expected / expected.sum(), atol=1e-6)
    for bad, match in [
        ({"temperature": 0.0}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_k": 0}, "top_k"),
    ]:
        with pytest.raises(ValueError, match=match):
            filter_logits(logits, **bad)


def test_ancestral_sample_fills_the_buffer_after_the_prompt():
    x = torch.tensor([[2, 0, 0, 0], [1, 0, 0, 0]])
    seen = []

    def next_logits(x, i):  # always category i % 3; records what it was shown
        seen.append((i, x[:, i:].abs().sum().item()))
        return torch.nn.functional.one_hot(torch.full((2,), i % 3), 3).float() * 50

    out = ancestral_sample(next_logits, x, 1, generator=torch.Generator().manual_seed(0))
    assert out is x and x.tolist() == [[2, 1, 2, 0], [1, 1, 2, 0]]
    assert seen == [(1, 0), (2, 0), (3, 0)]  # never shown a position it has not drawn yet


def test_sample_rejects_bad_prompts(chain):
    # issue 11: -1 and 1.7 were accepted (1.7 silently as 1), 7 raised a raw IndexError
    with pytest.raises(ValueError, match=r"prompt values must lie in \[0, 2\], found range \[-1"):
        chain.sample(2, prompt=torch.tensor([-1]))
    with pytest.raises(TypeError, match="prompt must hold integer category indices"):
        chain.sample(2, prompt=torch.tensor([1.7]))
    with pytest.raises(TypeError, match="prompt must hold integer category indices"):
        chain.sample(2, prompt=[0, 1.7])
    with pytest.raises(ValueError, match=r"prompt values must lie in \[0, 2\], found range \[7"):
        chain.sample(2, prompt=torch.tensor([7]))
    with pytest.raises(ValueError, match="prompt must have shape"):
        chain.sample(2, prompt=torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="length 4 only"):
        chain.sample(2, length=5)
    # a prompt of any integer dtype is fine
    x = chain.sample(3, prompt=torch.tensor([2, 1], dtype=torch.uint8), length=4)
    assert x.dtype == torch.long and x[:, :2].tolist() == [[2, 1]] * 3


def test_bad_input_is_a_clear_error(chain):
    with pytest.raises(TypeError, match="integer category indices"):
        chain.log_prob(torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"values must lie in \[0, 2\]"):
        chain.log_prob(torch.tensor([[0, 1, 3, 0]]))
    with pytest.raises(ValueError, match=r"shape \(batch, 4\)"):
        chain.log_prob(torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(TypeError, match="torch.Tensor"):
        as_indices([0, 1], 2)
