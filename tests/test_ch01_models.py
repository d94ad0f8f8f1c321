"""Chapter 1 models: FVSBN, MADE and the joint table must be normalised, causal in their order,
agree with an independent computation, sample the distribution they define, and refuse bad input."""

import itertools

import pytest
import torch

from arnb.enumeration import conditional_by_completion, enumerate_log_probs
from arnb.models.fvsbn import FVSBN, random_order
from arnb.models.joint_table import JointTable, select_alpha
from arnb.models.made import MADE, MADEConfig, MaskedLinear
from arnb.protocol import ARModel
from arnb.testing import (
    all_configurations,
    assert_causal,
    assert_normalized,
    assert_prompt_kept,
    assert_sampler_matches,
    dependency_matrix,
    perturbation_dependency,
)

D = 5
ORDERS = [None, [4, 2, 0, 3, 1], random_order(D, 7).tolist()]


def randomize(model: torch.nn.Module, seed: int = 0, scale: float = 1.5) -> torch.nn.Module:
    """Random weights, large enough that every dependency shows (zero init would hide them)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return model


def make(kind: str, order=None, dims: int = D):
    if kind == "fvsbn":
        return randomize(FVSBN(dims, order=order))
    if kind == "made":
        return randomize(MADE(MADEConfig(dims, hidden=(24, 24), order=order, seed=3)), scale=0.8)
    if kind == "made-nodirect":
        return randomize(
            MADE(MADEConfig(dims, hidden=(16,), direct=False, order=order, seed=1)), scale=0.8
        )
    g = torch.Generator().manual_seed(5)
    data = (torch.rand(300, dims, generator=g) < torch.linspace(0.2, 0.7, dims)).long()
    data[:100, 1:] = data[:100, :1]  # strong dependence between dimensions
    return JointTable(dims, alpha=0.5, order=order).fit(data)


KINDS = ["fvsbn", "made", "made-nodirect", "table"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("order", ORDERS, ids=["natural", "fixed", "random"])
def test_exactly_normalized(kind, order):
    model = make(kind, order)
    assert isinstance(model, ARModel)
    total = assert_normalized(model.log_prob, all_configurations(D), atol=1e-5)
    assert total == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("kind", ["fvsbn", "made", "made-nodirect"])
@pytest.mark.parametrize("order", ORDERS, ids=["natural", "fixed", "random"])
def test_causal_by_gradient(kind, order):
    model = make(kind, order, dims=7 if order is None else D)
    x = torch.rand(model.dims)
    dep = dependency_matrix(model, x)
    assert_causal(dep, model.rank, model.rank)
    # and it is not trivially causal: each conditional sees every earlier dimension (through
    # FVSBN's weights or MADE's direct layer; a MADE without one may miss a few by chance)
    if kind != "made-nodirect":
        earlier = model.rank[None, :] < model.rank[:, None]
        assert torch.equal(dep, earlier)
    else:
        assert dep.sum() > 0


@pytest.mark.parametrize("seed", range(4))
def test_made_causal_for_random_orders_and_connectivity(seed):
    model = randomize(
        MADE(MADEConfig(8, hidden=(32, 32, 32), order=random_order(8, seed), seed=seed)), seed, 0.8
    )
    assert_causal(dependency_matrix(model, torch.rand(8)), model.rank, model.rank)
    model.set_order(random_order(8, 100 + seed))  # a changed order rebuilds the masks
    assert_causal(dependency_matrix(model, torch.rand(8)), model.rank, model.rank)
    assert_normalized(model.log_prob, all_configurations(8), atol=1e-5)


def test_causality_probe_catches_an_unmasked_made():
    model = make("made")
    for layer in model.modules():
        if isinstance(layer, MaskedLinear):
            layer.mask.fill_(1.0)  # a plain MLP: sees the future
    with pytest.raises(AssertionError, match="not causal"):
        assert_causal(dependency_matrix(model, torch.rand(D)), model.rank, model.rank)


def test_table_causal_by_perturbation():
    model = make("table", ORDERS[1])
    dep = perturbation_dependency(model, torch.tensor([1, 0, 1, 1, 0]), num_classes=2)
    assert_causal(dep, model.rank, model.rank)


def test_fvsbn_matches_torch_distributions():
    model = make("fvsbn", ORDERS[1])
    x = all_configurations(D)
    w, b = model.weight_matrix().detach(), model.bias[model.rank].detach()
    want = torch.zeros(len(x))
    for d in range(D):
        logit = b[d] + sum(w[d, e] * x[:, e] for e in range(D) if model.rank[e] < model.rank[d])
        want += torch.distributions.Bernoulli(logits=logit).log_prob(x[:, d].float())
    torch.testing.assert_close(model.log_prob(x).detach(), want, rtol=1e-5, atol=1e-5)


def test_made_log_prob_matches_bernoulli_of_its_logits():
    model = make("made", ORDERS[2])
    x = all_configurations(D)
    want = torch.distributions.Bernoulli(logits=model(x)).log_prob(x.float()).sum(-1)
    torch.testing.assert_close(model.log_prob(x), want)


def test_table_probabilities_are_smoothed_counts():
    data = torch.tensor([[0, 1, 1], [0, 1, 1], [1, 0, 0]])
    table = JointTable(3, alpha=0.5).fit(data)
    probs = table.log_prob(all_configurations(3)).exp()
    want = torch.full((8,), 0.5 / (3 + 0.5 * 8), dtype=torch.float64)
    want[0b011] = 2.5 / 7
    want[0b100] = 1.5 / 7
    torch.testing.assert_close(probs, want)
    assert table.num_free_parameters() == 7 and table.num_stored_patterns() == 2


@pytest.mark.parametrize("order", ORDERS, ids=["natural", "fixed", "random"])
def test_table_conditionals_are_exact(order):
    """Each conditional of the table equals the ratio of two marginals computed by brute force."""
    table = make("table", order)
    configs, logp = enumerate_log_probs(table.log_prob, D)
    x = torch.tensor([[1, 0, 1, 1, 0], [0, 0, 0, 1, 1]])
    for row in x:
        for k in range(D):
            seen = table.order[:k]
            d = int(table.order[k])
            match = (configs[:, seen] == row[seen]).all(1)
            p1 = logp[match & (configs[:, d] == 1)].exp().sum() / logp[match].exp().sum()
            got = torch.sigmoid(table.conditional_logit(row[None], k))
            torch.testing.assert_close(got, p1[None], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(table.log_prob_terms(x).sum(-1), table.log_prob(x))


def test_select_alpha_picks_best_validation_nll():
    g = torch.Generator().manual_seed(0)
    train = (torch.rand(200, 6, generator=g) < 0.3).long()
    val = (torch.rand(200, 6, generator=g) < 0.3).long()
    best, scores = select_alpha(train, val, [1e-4, 1.0, 1e4])
    assert best == min(scores, key=scores.get) and len(scores) == 3


@pytest.mark.parametrize("kind", ["fvsbn", "made", "table"])
def test_sampler_matches_exact_probabilities(kind):
    """Chi-square test, false-alarm rate 1e-3, fixed seed (so the outcome is deterministic)."""
    model = make(kind, ORDERS[2])
    configs, logp = enumerate_log_probs(model.log_prob, D)
    samples = model.sample(20000, generator=torch.Generator().manual_seed(0))
    assert samples.dtype == torch.long and samples.shape == (20000, D)
    assert_sampler_matches(samples, logp, configs, alpha=1e-3)


def test_sampler_check_catches_a_wrong_sampler():
    model = make("fvsbn", ORDERS[1])
    configs, logp = enumerate_log_probs(model.log_prob, D)
    other = make("fvsbn", ORDERS[1])
    randomize(other, seed=1)
    samples = other.sample(20000, generator=torch.Generator().manual_seed(0))
    with pytest.raises(AssertionError, match="do not follow"):
        assert_sampler_matches(samples, logp, configs, alpha=1e-3)


@pytest.mark.parametrize("kind", ["fvsbn", "made", "table"])
def test_prompt_is_kept_and_rest_follows_the_conditional(kind):
    model = make(kind, ORDERS[1])
    prompt = torch.tensor([1, 0])  # values of order[0], order[1] = dims 4 and 2
    samples = model.sample(20000, prompt=prompt, generator=torch.Generator().manual_seed(1))
    assert_prompt_kept(samples[:, model.order], prompt)
    exact = conditional_by_completion(model.log_prob, D, model.order[:2], prompt)
    rest = exact["missing"]
    assert_sampler_matches(
        samples[:, rest], exact["log_conditional"], exact["completions"][:, rest]
    )


def test_prompt_per_row_and_full_prompt():
    model = make("made")
    prompt = torch.tensor([[0, 1, 1], [1, 1, 0]])
    s = model.sample(2, prompt=prompt, generator=torch.Generator().manual_seed(0))
    assert_prompt_kept(s, prompt)
    full = torch.tensor([1, 0, 1, 0, 1])
    assert torch.equal(model.sample(3, prompt=full)[0], full)


def test_sampling_is_reproducible_from_a_generator():
    model = make("made", ORDERS[2])
    a = model.sample(50, generator=torch.Generator().manual_seed(3))
    b = model.sample(50, generator=torch.Generator().manual_seed(3))
    c = model.sample(50, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_made_order_survives_state_dict():
    model = make("made", ORDERS[1])
    other = MADE(MADEConfig(D, hidden=(24, 24), seed=3))
    other.load_state_dict(model.state_dict())
    assert torch.equal(other.order, model.order)
    x = all_configurations(D)
    torch.testing.assert_close(other.log_prob(x), model.log_prob(x))


def test_parameter_counts():
    assert FVSBN(16).num_free_parameters() == 16 * 17 // 2
    made = MADE(MADEConfig(4, hidden=(3,), direct=False))
    free = made.num_free_parameters()
    assert free < made.num_parameters()
    assert free == int(made.hidden[0].mask.sum() + made.out.mask.sum()) + 3 + 4
    assert JointTable(16).num_free_parameters() == 2**16 - 1


@pytest.mark.parametrize("kind", KINDS)
def test_bad_input_raises_clear_errors(kind):
    model = make(kind)
    with pytest.raises(ValueError, match=r"values must lie in \[0, 1\]"):
        model.log_prob(torch.tensor([[0, 1, 2, 0, 1]]))
    with pytest.raises(ValueError, match="shape"):
        model.log_prob(torch.zeros(2, D + 1, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        model.log_prob(torch.zeros(2, D))
    with pytest.raises(ValueError, match="prompt"):
        model.sample(2, prompt=torch.zeros(D + 1, dtype=torch.long))
    with pytest.raises(ValueError, match="prompt"):
        model.sample(2, prompt=torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="n must"):
        model.sample(0)
    with pytest.raises(ValueError, match="length"):
        model.sample(2, length=D + 1)
    with pytest.raises(TypeError):
        model.sample(2, None, torch.Generator())  # everything after n is a keyword
    with pytest.raises(TypeError, match="integer"):
        model.log_prob(torch.ones(2, D, dtype=torch.bool))


@pytest.mark.parametrize("kind", KINDS)
def test_any_integer_dtype_empty_batches_and_float64(kind):
    model = make(kind, ORDERS[1])
    x = all_configurations(D)
    want = model.log_prob(x)
    for dtype in (torch.uint8, torch.int8, torch.int32):
        torch.testing.assert_close(model.log_prob(x.to(dtype)), want)
    assert model.log_prob(x[:0]).shape == (0,)
    assert model.sample(3, length=D).shape == (3, D)
    torch.testing.assert_close(model.nll(x), -want.mean() / D)  # nats per dimension
    double = model.double()
    assert double.log_prob(x).dtype == torch.float64
    assert double.sample(2, generator=torch.Generator().manual_seed(0)).dtype == torch.long


def test_bad_construction_raises_clear_errors():
    with pytest.raises(ValueError, match="permutation"):
        FVSBN(3, order=[0, 0, 1])
    with pytest.raises(ValueError, match="permutation"):
        MADE(MADEConfig(3, order=[0, 1]))
    with pytest.raises(ValueError, match="alpha"):
        JointTable(3, alpha=0.0)
    with pytest.raises(ValueError, match="62"):
        JointTable(63)
    with pytest.raises(ValueError, match="dims"):
        FVSBN(0)


def test_no_nan_for_extreme_weights():
    model = make("fvsbn")
    with torch.no_grad():
        model.weight.mul_(1e4)
        model.bias.mul_(1e4)
    lp = model.log_prob(all_configurations(D))
    assert not torch.isnan(lp).any()


def test_gradient_matches_finite_differences():
    """Autograd's gradient of the NLL equals a central finite difference (float64)."""
    model = make("fvsbn").double()
    x = torch.tensor(list(itertools.islice(itertools.product([0, 1], repeat=D), 7)))
    model.zero_grad()
    model.nll(x).backward()
    for p in model.parameters():
        for idx in [0, p.numel() - 1]:
            with torch.no_grad():
                old = p.view(-1)[idx].item()
                p.view(-1)[idx] = old + 1e-6
                up = model.nll(x).item()
                p.view(-1)[idx] = old - 1e-6
                down = model.nll(x).item()
                p.view(-1)[idx] = old
            assert p.grad.view(-1)[idx].item() == pytest.approx(
                (up - down) / 2e-6, rel=1e-5, abs=1e-8
            )
