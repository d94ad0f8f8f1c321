"""The autoregressive implicit quantile network (AIQN) of chapter 3: quantiles, causality,
sampling."""

import pytest
import torch

from arnb.models import AIQN, AIQNConfig
from arnb.testing import assert_causal, dependency_matrix

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

MEAN, STD = 1.0, 0.5  # x1 ~ N(MEAN, STD^2); x2 = -x1 + N(0, NOISE^2)
NOISE = 0.3


def gaussian_pairs(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x1 = MEAN + STD * torch.randn(n, generator=g)
    x2 = -x1 + NOISE * torch.randn(n, generator=g)
    return torch.stack([x1, x2], dim=1)


@pytest.fixture(scope="module")
def trained() -> AIQN:
    """An AIQN fitted by the pinball loss on random taus (a few seconds on one thread)."""
    torch.manual_seed(0)
    model = AIQN(AIQNConfig(dims=2, hidden=32, depth=2, n_cos=16, num_taus=8))
    data = gaussian_pairs(4096, seed=1)
    steps = 800
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = torch.Generator().manual_seed(2)
    for _ in range(steps):
        batch = data[torch.randint(len(data), (128,), generator=g)]
        loss = model.quantile_loss(batch, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        decay.step()
    return model.eval()


def test_marginal_of_x1_has_the_gaussian_quantiles(trained):
    levels = torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95])
    want = MEAN + STD * torch.distributions.Normal(0.0, 1.0).icdf(levels)
    tau = torch.zeros(1, 2, len(levels))
    tau[0, 0] = levels
    with torch.no_grad():
        got = trained(torch.zeros(1, 2), tau)[0, 0]
    torch.testing.assert_close(got, want, atol=0.08, rtol=0)
    # and the samples: their mean and spread are those of N(MEAN, STD^2)
    x = trained.sample(20_000, generator=torch.Generator().manual_seed(3))
    assert abs(float(x[:, 0].mean()) - MEAN) < 0.05
    assert abs(float(x[:, 0].std()) - STD) < 0.05


def test_quantile_function_is_monotone_in_tau(trained):
    # levels 0.1 apart: the pinball loss leaves wiggles smaller than the true steps between them
    tau = torch.linspace(0.1, 0.9, 9).expand(5, 2, -1).contiguous()
    x = gaussian_pairs(5, seed=4)
    with torch.no_grad():
        q = trained(x, tau)  # (5, 2, 9)
    steps = q.diff(dim=-1)
    assert bool((steps > 0).all()), f"quantiles decrease somewhere: min step {float(steps.min())}"


def test_second_conditional_follows_x1(trained):
    """The median of x2 given x1 is -x1: the conditional reads the earlier coordinate."""
    x1 = torch.tensor([0.5, 1.0, 1.5])
    x = torch.stack([x1, torch.zeros(3)], dim=1)
    with torch.no_grad():
        median = trained(x)[:, 1]  # tau None: the medians
    torch.testing.assert_close(median, -x1, atol=0.15, rtol=0)


def test_causal_and_second_coordinate_sees_the_first():
    model = AIQN(dims=3, hidden=8, depth=1, n_cos=4)
    dep = dependency_matrix(model, torch.randn(3))
    assert_causal(dep)  # Q_d never reads x_d or later
    assert dep[1, 0] and dep[2, 0] and dep[2, 1]


def test_prompt_is_kept_and_the_rest_drawn(trained):
    g = torch.Generator().manual_seed(5)
    x = trained.sample(4000, prompt=torch.tensor([1.2]), generator=g)
    assert bool((x[:, 0] == 1.2).all())
    assert abs(float(x[:, 1].mean()) + 1.2) < 0.1  # x2 | x1 = 1.2 is N(-1.2, NOISE^2)
    prompts = torch.tensor([[0.3], [0.9]])
    x = trained.sample(2, prompt=prompts, generator=g)
    assert torch.equal(x[:, :1], prompts)
    full = trained.sample(2, prompt=torch.tensor([0.3, 0.4]), generator=g)
    assert torch.equal(full, torch.tensor([[0.3, 0.4]] * 2))


def test_sampling_is_inverse_cdf_of_the_forward_quantiles():
    """sample() draws tau ~ U(0, 1) per coordinate, in order, from the given generator."""
    model = AIQN(dims=2, hidden=8, depth=1, n_cos=4)
    x = model.sample(6, generator=torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    tau1, tau2 = torch.rand(6, 1, generator=g), torch.rand(6, 1, generator=g)
    with torch.no_grad():
        q = model(x, torch.cat([tau1, tau2], dim=1))
    torch.testing.assert_close(q, x)


def test_bad_inputs():
    model = AIQN(dims=2, hidden=8, depth=1, n_cos=4)
    with pytest.raises(ValueError, match="length"):
        model.sample(2, length=3)
    with pytest.raises(ValueError, match="prompt"):
        model.sample(2, prompt=torch.zeros(3))
    with pytest.raises(ValueError, match="x"):
        model(torch.zeros(4, 3))


def test_histogram_tv_of_the_chapter():
    """The sample score the chapter compares the AIQN and the MDNs with."""
    from arnb.chapters.ch03_continuous import histogram_tv

    pts = torch.tensor([[0.0, 0.0], [1.0, 0.5], [2.0, -0.5]])
    assert histogram_tv(pts, pts) == 0.0
    assert histogram_tv(pts, pts + 0.01) == 0.0  # the same cells
    assert histogram_tv(pts, -pts - 0.3) == 1.0  # no cell in common
    far = torch.tensor([[50.0, 0.0], [0.0, -50.0], [1e3, 1e3]])  # all in the outside cell
    assert histogram_tv(far, far[[2, 0, 1]]) == 0.0
    assert histogram_tv(far, pts) == 1.0
    half = torch.cat([pts[:2], far[:1]])
    assert abs(histogram_tv(half, pts) - 1 / 3) < 1e-12
