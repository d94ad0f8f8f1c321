"""Chapter 3 models and toy data: MDN, MSE regressor, quantile net, the 2-D autoregressive MDN,
the inverse-sine problem's exact conditional and Bayes floor."""

import math

import numpy as np
import pytest
import torch
from torch import distributions as D

from arnb.data.toy import (
    inverse_sine,
    inverse_sine_bayes_floor,
    inverse_sine_conditional_density,
    inverse_sine_log_prob,
    inverse_sine_quantiles,
    two_moons,
)
from arnb.models.mdn import (
    MDN,
    AutoregressiveMDN2D,
    ConditionalDensityNet,
    MDNConfig,
    MSERegressor,
    QuantileNet,
)
from arnb.testing import assert_causal, dependency_matrix


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def as_torch_mixture(params):
    """``(..., K, 3)`` (logit, mean, scale) -> torch.distributions mixture."""
    logits, means, scales = params.unbind(-1)
    return D.MixtureSameFamily(D.Categorical(logits=logits), D.Normal(means, scales))


# ----------------------------------------------------------------------------- inverse-sine truth


def test_bayes_floor_unit_noise_is_1_288():
    assert abs(inverse_sine_bayes_floor(1.0) - 1.2880) < 5e-4


def test_bayes_floor_agrees_with_monte_carlo():
    x, y = inverse_sine(20_000, 1.0, torch.Generator().manual_seed(0))
    mc = float(-inverse_sine_log_prob(y, x, 1.0).mean())
    # standard error of the mean of -log p(y|x) is about 0.007 here
    assert abs(mc - inverse_sine_bayes_floor(1.0)) < 0.03
    # a smaller noise gives a lower floor
    assert inverse_sine_bayes_floor(0.5) < inverse_sine_bayes_floor(1.0) - 0.3


def test_true_conditional_normalises_and_quantiles_are_consistent():
    yg = np.linspace(-10.5, 10.5, 20_001)
    dens = inverse_sine_conditional_density([-6.0, 0.0, 3.0], yg)
    mass = np.trapezoid(dens, yg, axis=1)
    np.testing.assert_allclose(mass, 1.0, atol=1e-6)
    q = inverse_sine_quantiles([-6.0, 0.0, 3.0], [0.1, 0.5, 0.9])
    assert (np.diff(q, axis=1) > 0).all()
    for row, qs in zip(dens, q):
        cdf_at_median = np.trapezoid(np.where(yg <= qs[1], row, 0.0), yg)
        assert abs(cdf_at_median - 0.5) < 1e-3


def test_inverse_sine_data_and_errors():
    x, y = inverse_sine(100, generator=torch.Generator().manual_seed(0))
    assert x.shape == (100, 1) and y.shape == (100,)
    assert y.min() >= -10.5 and y.max() <= 10.5
    with pytest.raises(ValueError, match="noise_std"):
        inverse_sine(10, noise_std=0.0)
    pts = two_moons(500, generator=torch.Generator().manual_seed(0))
    assert pts.shape == (500, 2) and torch.isfinite(pts).all()


# ----------------------------------------------------------------------------- conditional nets


def test_mdn_log_prob_matches_torch_distributions():
    torch.manual_seed(0)
    mdn = MDN(MDNConfig(hidden=16, num_components=4))
    x, y = inverse_sine(64, generator=torch.Generator().manual_seed(1))
    mix = mdn(x)
    ref = as_torch_mixture(mix.params()).log_prob(y)
    torch.testing.assert_close(mdn.log_prob(y, x), ref, atol=1e-5, rtol=1e-6)
    assert mdn.sample(x, torch.Generator().manual_seed(0)).shape == (64,)


def test_mdn_loss_stays_finite_when_data_collapse_onto_a_point():
    """All targets equal: an unfloored sigma would shrink to 0 and the NLL run to -inf."""
    torch.manual_seed(0)
    mdn = MDN(MDNConfig(hidden=16, num_components=3, min_scale=1e-2))
    x = torch.randn(256, 1)
    y = torch.zeros(256)
    opt = torch.optim.Adam(mdn.parameters(), lr=0.01)
    losses = []
    for _ in range(150):
        loss = mdn.nll(y, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    losses = torch.tensor(losses)
    assert torch.isfinite(losses).all()
    bound = math.log(1e-2) + 0.5 * math.log(2 * math.pi)  # NLL of a point mass at the floor
    assert losses.min() >= bound - 1e-4  # the floor holds ...
    assert losses.min() < bound + 0.5  # ... and training did push sigma down onto it


def test_binned_net_log_density_and_range():
    torch.manual_seed(0)
    net = ConditionalDensityNet(MDNConfig(hidden=16, head="bins", num_bins=8, low=-1.0, high=1.0))
    x = torch.randn(5, 1)
    dist = net(x)
    y = torch.tensor([-0.99, -0.3, 0.0, 0.5, 1.0])
    k = torch.tensor([0, 2, 4, 6, 7])
    expected = torch.log_softmax(dist.logits, -1).gather(1, k[:, None]).squeeze(1) - math.log(0.25)
    torch.testing.assert_close(net.log_prob(y, x), expected)
    s = net.sample(x, torch.Generator().manual_seed(0))
    assert ((s >= -1) & (s <= 1)).all()


def test_mse_regressor_and_quantile_net_shapes():
    torch.manual_seed(0)
    reg = MSERegressor(1, 16, 2)
    x, y = inverse_sine(32, generator=torch.Generator().manual_seed(0))
    assert reg(x).shape == (32,) and reg.loss(y, x).dim() == 0
    lp = reg.gaussian_log_prob(y, x, 2.0)
    torch.testing.assert_close(lp, D.Normal(reg(x), 2.0).log_prob(y))
    qn = QuantileNet(1, 16, 2, n_cos=8)
    assert qn(x, torch.rand(32, 3)).shape == (32, 3)
    loss = qn.loss(y, x, 4, torch.Generator().manual_seed(0))
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert qn.sample(x, torch.Generator().manual_seed(0)).shape == (32,)


def test_conditional_nets_reject_bad_input():
    mdn = MDN(MDNConfig(hidden=8, num_components=2))
    with pytest.raises(ValueError, match=r"x must have shape \(B, 1\)"):
        mdn(torch.zeros(4))
    with pytest.raises(ValueError, match="NaN or infinite"):
        mdn(torch.tensor([[0.0], [float("inf")]]))
    with pytest.raises(ValueError, match=r"y must have shape \(4\)"):
        mdn.log_prob(torch.zeros(3), torch.zeros(4, 1))
    with pytest.raises(ValueError, match="NaN or infinite"):
        mdn.log_prob(torch.tensor([0.0, float("nan")]), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="head must be"):
        ConditionalDensityNet(MDNConfig(head="flow"))
    with pytest.raises(ValueError, match=r"tau must have shape"):
        QuantileNet(1, 8, 1)(torch.zeros(4, 1), torch.rand(3, 2))


# ----------------------------------------------------------------------------- 2-D autoregressive


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_ar2d_is_causal_in_its_order(order):
    torch.manual_seed(0)
    model = AutoregressiveMDN2D(3, 16, 2, order=order)
    dep = dependency_matrix(model, torch.randn(2))
    position = torch.tensor([order.index(0), order.index(1)])  # where each coordinate comes
    assert_causal(dep, order=position, out_order=position)
    assert dep[order[1], order[0]]  # the second coordinate does read the first
    indep = AutoregressiveMDN2D(3, 16, 2, independent=True)
    assert not dependency_matrix(indep, torch.randn(2)).any()


def test_ar2d_log_prob_matches_torch_distributions_and_normalises():
    torch.manual_seed(0)
    model = AutoregressiveMDN2D(3, 16, 2, order=(1, 0))
    x = torch.randn(16, 2)
    params = model(x)  # (B, 2, K, 3), row i = coordinate i
    ref = as_torch_mixture(params[:, 0]).log_prob(x[:, 0]) + as_torch_mixture(
        params[:, 1]
    ).log_prob(x[:, 1])
    torch.testing.assert_close(model.log_prob(x), ref, atol=1e-5, rtol=1e-6)
    # integral of the density over a wide grid is one
    g = torch.linspace(-8, 8, 321)
    xx, yy = torch.meshgrid(g, g, indexing="ij")
    with torch.no_grad():
        p = model.log_prob(torch.stack([xx.flatten(), yy.flatten()], 1)).exp()
    assert abs(float(p.sum()) * float(g[1] - g[0]) ** 2 - 1.0) < 2e-3


def test_ar2d_sampling_follows_its_conditionals():
    torch.manual_seed(0)
    model = AutoregressiveMDN2D(3, 16, 2, order=(0, 1))
    n = 100_000
    g = torch.Generator().manual_seed(0)
    s = model.sample(n, generator=g)
    first = model._first_mixture(1)
    torch.testing.assert_close(s[:, 0].double().mean(), first.mean[0].double(), atol=0.02, rtol=0)
    torch.testing.assert_close(
        s[:, 0].double().var(), first.variance[0].double(), atol=0.05, rtol=0
    )
    # with a prompt, x_0 is kept and x_1 follows p(x_1 | x_0)
    c = model.sample(n, prompt=0.7, generator=g)
    assert (c[:, 0] == 0.7).all()
    cond = model.second(torch.tensor([[0.7]]))
    torch.testing.assert_close(c[:, 1].double().mean(), cond.mean[0].double(), atol=0.02, rtol=0)
    torch.testing.assert_close(c[:, 1].double().var(), cond.variance[0].double(), atol=0.05, rtol=0)


def test_ar2d_rejects_bad_input():
    model = AutoregressiveMDN2D(2, 8, 1)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 2\)"):
        model.log_prob(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.log_prob(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(TypeError, match="floating-point"):
        model.log_prob(torch.zeros(4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="prompt"):
        model.sample(4, prompt=torch.zeros(3))
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.sample(2, prompt=float("nan"))
    with pytest.raises(ValueError, match="order"):
        AutoregressiveMDN2D(2, 8, 1, order=(0, 0))
