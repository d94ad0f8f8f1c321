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
    MDN2DConfig,
    MDNConfig,
    MSERegressor,
    QuantileConfig,
    QuantileNet,
)
from arnb.testing import assert_causal, dependency_matrix

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


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
    torch.testing.assert_close(mdn.log_prob(y, context=x), ref, atol=1e-5, rtol=1e-6)
    assert mdn.sample(64, context=x, generator=torch.Generator().manual_seed(0)).shape == (64,)
    # nll is the mean over y (one scored dimension each)
    torch.testing.assert_close(mdn.nll(y, context=x), -ref.mean(), atol=1e-5, rtol=1e-6)


def test_mdn_loss_stays_finite_when_data_collapse_onto_a_point():
    """All targets equal: an unfloored sigma would shrink to 0 and the NLL run to -inf."""
    torch.manual_seed(0)
    mdn = MDN(MDNConfig(hidden=16, num_components=3, min_scale=1e-2))
    x = torch.randn(256, 1)
    y = torch.zeros(256)
    opt = torch.optim.Adam(mdn.parameters(), lr=0.01)
    losses = []
    for _ in range(150):
        loss = mdn.nll(y, context=x)
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
    torch.testing.assert_close(net.log_prob(y, context=x), expected)
    s = net.sample(5, context=x, generator=torch.Generator().manual_seed(0))
    assert ((s >= -1) & (s <= 1)).all()


def test_mse_regressor_and_quantile_net_shapes():
    torch.manual_seed(0)
    reg = MSERegressor(MDNConfig(hidden=16, depth=2))
    x, y = inverse_sine(32, generator=torch.Generator().manual_seed(0))
    assert reg(x).shape == (32,)
    torch.testing.assert_close(reg.mse(y, context=x), ((reg(x) - y) ** 2).mean())
    lp = reg.gaussian_log_prob(y, context=x, sigma=2.0)
    torch.testing.assert_close(lp, D.Normal(reg(x), 2.0).log_prob(y))
    qn = QuantileNet(QuantileConfig(hidden=16, depth=2, n_cos=8, num_taus=4))
    assert qn(x, torch.rand(32, 3)).shape == (32, 3)
    loss = qn.quantile_loss(y, context=x, generator=torch.Generator().manual_seed(0))
    assert loss.dim() == 0 and torch.isfinite(loss)
    g = torch.Generator().manual_seed(0)
    assert qn.sample(32, context=x, generator=g).shape == (32,)
    # one context row serves every draw
    assert qn.sample(5, context=torch.tensor([0.5]), generator=g).shape == (5,)


def test_conditional_nets_reject_bad_input():
    mdn = MDN(MDNConfig(hidden=8, num_components=2))
    with pytest.raises(ValueError, match=r"context must have shape \(B, 1\)"):
        mdn(torch.zeros(4))
    with pytest.raises(ValueError, match="NaN or infinite"):
        mdn(torch.tensor([[0.0], [float("inf")]]))
    with pytest.raises(ValueError, match=r"context must have shape \(3, 1\)"):
        mdn.log_prob(torch.zeros(3), context=torch.zeros(4, 1))
    with pytest.raises(ValueError, match="NaN or infinite"):
        mdn.log_prob(torch.tensor([0.0, float("nan")]), context=torch.zeros(2, 1))
    with pytest.raises(ValueError, match="pass context="):
        mdn.log_prob(torch.zeros(2), context=None)
    with pytest.raises(TypeError):
        mdn.log_prob(torch.zeros(2), torch.zeros(2, 1))  # the context by keyword only
    with pytest.raises(ValueError, match="no prompt"):
        mdn.sample(2, context=torch.zeros(1), prompt=torch.zeros(1))
    with pytest.raises(ValueError, match="length"):
        mdn.sample(2, context=torch.zeros(1), length=3)
    with pytest.raises(ValueError, match="head must be"):
        ConditionalDensityNet(MDNConfig(head="flow"))
    with pytest.raises(ValueError, match=r"tau must have shape"):
        QuantileNet(hidden=8, depth=1)(torch.zeros(4, 1), torch.rand(3, 2))
    with pytest.raises(ValueError, match="loss must be"):
        QuantileNet(loss="l1")


def test_conditional_nets_float64_and_empty_batches():
    torch.manual_seed(0)
    for head in ("mixture", "bins"):
        net = ConditionalDensityNet(MDNConfig(hidden=8, head=head, num_bins=8)).double()
        x, y = inverse_sine(6, generator=torch.Generator().manual_seed(0))
        lp = net.log_prob(y, context=x)
        assert lp.dtype == torch.float64 and torch.isfinite(lp).all()
        s = net.sample(3, context=torch.tensor([0.5]), generator=torch.Generator())
        assert s.dtype == torch.float64
        empty = net.log_prob(torch.zeros(0), context=torch.zeros(0, 1))
        assert empty.shape == (0,)


# ----------------------------------------------------------------------------- 2-D autoregressive


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_ar2d_is_causal_in_its_order(order):
    torch.manual_seed(0)
    model = AutoregressiveMDN2D(num_components=3, hidden=16, order=order)
    dep = dependency_matrix(model, torch.randn(2))
    position = torch.tensor([order.index(0), order.index(1)])  # where each coordinate comes
    assert_causal(dep, order=position, out_order=position)
    assert dep[order[1], order[0]]  # the second coordinate does read the first
    indep = AutoregressiveMDN2D(num_components=3, hidden=16, independent=True)
    assert not dependency_matrix(indep, torch.randn(2)).any()


def test_ar2d_log_prob_matches_torch_distributions_and_normalises():
    torch.manual_seed(0)
    model = AutoregressiveMDN2D(MDN2DConfig(num_components=3, hidden=16, order=(1, 0)))
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
    model = AutoregressiveMDN2D(num_components=3, hidden=16, order=(0, 1))
    n = 100_000
    g = torch.Generator().manual_seed(0)
    s = model.sample(n, generator=g)
    first = model._first_mixture(1)
    torch.testing.assert_close(s[:, 0].double().mean(), first.mean[0].double(), atol=0.02, rtol=0)
    torch.testing.assert_close(
        s[:, 0].double().var(), first.variance[0].double(), atol=0.05, rtol=0
    )
    # with a prompt, x_0 is kept and x_1 follows p(x_1 | x_0)
    c = model.sample(n, prompt=torch.tensor([0.7]), generator=g)
    assert (c[:, 0] == 0.7).all()
    cond = model.second(torch.tensor([[0.7]]))
    torch.testing.assert_close(c[:, 1].double().mean(), cond.mean[0].double(), atol=0.02, rtol=0)
    torch.testing.assert_close(c[:, 1].double().var(), cond.variance[0].double(), atol=0.05, rtol=0)
    # the prompt is in model order: for order (1, 0) it fixes x_1
    rev = AutoregressiveMDN2D(num_components=3, hidden=16, order=(1, 0))
    r = rev.sample(5, prompt=torch.tensor([0.3]), generator=g)
    assert (r[:, 1] == 0.3).all()
    full = torch.tensor([[0.1, 0.2]])
    assert torch.equal(model.sample(1, prompt=full), full)


def test_ar2d_nll_is_per_coordinate_and_float64_round_trip():
    torch.manual_seed(0)
    model = AutoregressiveMDN2D(num_components=3, hidden=16)
    x = torch.randn(8, 2)
    torch.testing.assert_close(model.nll(x), -model.log_prob(x).mean() / 2)
    model.double()
    lp = model.log_prob(x.double())
    assert lp.dtype == torch.float64
    assert model.sample(3, generator=torch.Generator()).dtype == torch.float64
    assert model.log_prob(torch.zeros(0, 2)).shape == (0,)


def test_ar2d_rejects_bad_input():
    model = AutoregressiveMDN2D(num_components=2, hidden=8, depth=1)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 2\)"):
        model.log_prob(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.log_prob(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(TypeError, match="floating-point"):
        model.log_prob(torch.zeros(4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="prompt"):
        model.sample(4, prompt=torch.zeros(3))
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.sample(2, prompt=torch.tensor([float("nan")]))
    with pytest.raises(ValueError, match="length 2 only"):
        model.sample(2, length=3)
    with pytest.raises(TypeError):
        model.sample(2, None)  # prompt, generator, length: keyword-only
    with pytest.raises(ValueError, match="order"):
        AutoregressiveMDN2D(order=(0, 0))
