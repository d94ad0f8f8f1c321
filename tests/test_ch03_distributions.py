"""Chapter 3 heads: mixture log densities against torch.distributions, samplers against their
parameters, the quantile loss against known quantiles, binned densities, bad input."""

import math

import pytest
import torch
from torch import distributions as D

from arnb.distributions import (
    BinnedDensity,
    BinnedDensityHead,
    GaussianMixture,
    ImplicitQuantileHead,
    MixtureDensityHead,
    mixture_log_prob,
    pinball_loss,
    quantile_huber_loss,
)


def reference_log_prob(logits, means, scales, y):
    mix = D.MixtureSameFamily(D.Categorical(logits=logits), D.Normal(means, scales))
    return mix.log_prob(y)


def random_params(b, k, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, k, generator=g, dtype=dtype) * 2
    means = torch.randn(b, k, generator=g, dtype=dtype) * 3
    scales = torch.rand(b, k, generator=g, dtype=dtype) * 2 + 0.05
    return logits, means, scales


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mixture_log_prob_matches_torch_distributions(dtype):
    logits, means, scales = random_params(64, 5, dtype)
    y = torch.randn(64, dtype=dtype) * 4
    ours = GaussianMixture(logits, means, scales).log_prob(y)
    ref = reference_log_prob(logits, means, scales, y)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-6)


def test_mixture_far_tails_and_floored_scales():
    """Far in the tails every component density underflows; the log-space form must not."""
    logits, means, scales = random_params(32, 4)
    scales[:16] = 1e-3  # at the head's floor
    y = torch.cat(
        [
            torch.full((8,), 1e3),
            torch.full((8,), -1e4),
            torch.full((8,), 60.0),
            means[24:, 0] + 1e-4,
        ]
    ).double()
    ours = mixture_log_prob(logits, means, scales, y)
    ref = reference_log_prob(logits, means, scales, y)
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-9)
    # the naive formula underflows to -inf where the log-space one is finite
    naive = torch.log(
        (torch.softmax(logits, -1) * D.Normal(means, scales).log_prob(y[:, None]).exp()).sum(-1)
    )
    assert torch.isinf(naive[:8]).all() and torch.isfinite(ours[:8]).all()


def test_head_floors_scale_and_stays_finite():
    head = MixtureDensityHead(3, 4, min_scale=1e-3)
    with torch.no_grad():
        head.proj.bias[8:] = -1e4  # raw scales far negative: softplus underflows to 0
    mix = head(torch.randn(5, 3))
    assert (mix.scales >= 1e-3).all()
    lp = mix.log_prob(mix.means[:, 0])
    assert torch.isfinite(lp).all()
    # the floor bounds the density: log p <= -log(min_scale) - log sqrt(2 pi)
    assert (lp <= -math.log(1e-3) - 0.5 * math.log(2 * math.pi) + 1e-4).all()


def test_mixture_sampling_matches_parameters():
    logits = torch.log(torch.tensor([0.2, 0.5, 0.3]))
    means, scales = torch.tensor([-10.0, 0.0, 10.0]), torch.tensor([0.5, 1.0, 2.0])
    n = 200_000
    mix = GaussianMixture(logits.expand(n, -1), means.expand(n, -1), scales.expand(n, -1))
    s = mix.sample(torch.Generator().manual_seed(0)).double()
    assert s.shape == (n,)
    # weights: which component's region each sample fell in (components are well separated)
    region = torch.bucketize(s, torch.tensor([-5.0, 5.0], dtype=torch.float64))
    frac = torch.bincount(region, minlength=3).double() / n
    torch.testing.assert_close(
        frac, torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64), atol=0.01, rtol=0
    )
    torch.testing.assert_close(s.mean(), mix.mean[0].double(), atol=0.03, rtol=0)
    torch.testing.assert_close(s.var(), mix.variance[0].double(), atol=0.1, rtol=0)
    # same generator seed, same samples
    again = mix.sample(torch.Generator().manual_seed(0)).double()
    assert torch.equal(s, again)


def test_mixture_cdf_icdf_and_sharpen():
    logits, means, scales = random_params(16, 3)
    mix = GaussianMixture(logits, means, scales)
    ref = D.MixtureSameFamily(D.Categorical(logits=logits), D.Normal(means, scales))
    y = torch.randn(16, dtype=torch.float64)
    torch.testing.assert_close(mix.cdf(y), ref.cdf(y), atol=1e-10, rtol=0)
    tau = torch.rand(16, 7, dtype=torch.float64) * 0.98 + 0.01
    q = mix.icdf(tau)
    torch.testing.assert_close(ref.cdf(q.T).T, tau, atol=1e-8, rtol=0)
    sharp = mix.sharpen(0.5)
    torch.testing.assert_close(sharp.weights, torch.softmax(2 * logits, -1))
    torch.testing.assert_close(sharp.scales, scales * math.sqrt(0.5))
    with pytest.raises(ValueError, match="temperature"):
        mix.sharpen(0.0)


def test_binned_density_includes_log_width_and_normalises():
    logits = torch.randn(1, 10, generator=torch.Generator().manual_seed(0))
    dens = BinnedDensity(logits, -2.0, 3.0)
    # integral of the density over the range is one
    ys = torch.linspace(-2.0, 3.0, 100_001)[:-1] + 0.5 * 5 / 100_000
    p = BinnedDensity(logits.expand(len(ys), -1), -2.0, 3.0).log_prob(ys).exp()
    assert abs(float(p.mean() * 5.0) - 1.0) < 1e-4
    # log density = log P(bin) - log width
    y = torch.tensor([0.26])
    k = int((0.26 + 2.0) / 0.5)
    expected = torch.log_softmax(logits, -1)[0, k] - math.log(0.5)
    torch.testing.assert_close(dens.log_prob(y)[0], expected)


def test_binned_sampling_matches_bin_probabilities():
    probs = torch.tensor([0.1, 0.0, 0.6, 0.3])
    n = 100_000
    dens = BinnedDensity(torch.log(probs).expand(n, -1), 0.0, 4.0)
    s = dens.sample(torch.Generator().manual_seed(1))
    assert s.min() >= 0 and s.max() <= 4
    frac = torch.bincount(s.floor().long().clamp(max=3), minlength=4).double() / n
    torch.testing.assert_close(frac, probs.double(), atol=0.006, rtol=0)
    # inside a bin the samples are uniform: mean of the fractional part near 1/2
    assert abs(float((s - s.floor()).mean()) - 0.5) < 0.01


@pytest.mark.parametrize("tau", [0.1, 0.5, 0.9])
def test_pinball_loss_minimised_by_true_quantile(tau):
    """Expected pinball loss under Exp(1) over a grid of candidates: its argmin is -log(1 - tau).

    The expectation is a midpoint rule in probability space (y_i = F^-1((i + 1/2) / N)), so the
    test is deterministic and accurate to the grid spacing.
    """
    n = 20_000
    y = -torch.log1p(-(torch.arange(n, dtype=torch.float64) + 0.5) / n)
    candidates = torch.linspace(0.0, 3.0, 601, dtype=torch.float64)
    t = torch.full((len(candidates), 1), tau, dtype=torch.float64)
    loss = pinball_loss(candidates[:, None], y[None, :], t).mean(1)
    assert abs(float(candidates[loss.argmin()]) - (-math.log(1 - tau))) < 0.011
    # and a wrong loss (squared error) would pick the mean, 1, whatever tau
    sq = ((y[None, :] - candidates[:, None]) ** 2).mean(1)
    assert abs(float(candidates[sq.argmin()]) - 1.0) < 0.011


def test_pinball_gradient_descent_finds_normal_quantile():
    """A single free parameter trained with the pinball loss converges to the normal quantile."""
    n, tau = 4000, 0.8
    u = (torch.arange(n, dtype=torch.float32) + 0.5) / n
    y = 1 + 2 * D.Normal(0.0, 1.0).icdf(u)  # N(1, 2^2), midpoint rule in probability space
    q = torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([q], lr=0.1)
    for step in range(600):
        opt.param_groups[0]["lr"] = 0.1 * (1 - step / 600) + 1e-3
        loss = pinball_loss(q.expand(n), y, torch.full((n,), tau)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    truth = 1 + 2 * D.Normal(0.0, 1.0).icdf(torch.tensor(tau))
    assert abs(q.item() - float(truth)) < 0.02


def test_quantile_huber_tends_to_pinball():
    pred = torch.tensor([0.0, 0.0, 1.0])
    target = torch.tensor([3.0, -2.0, 1.5])
    tau = torch.tensor([0.3, 0.3, 0.7])
    small = quantile_huber_loss(pred, target, tau, kappa=1e-4)
    torch.testing.assert_close(small, pinball_loss(pred, target, tau), atol=1e-3, rtol=0)
    torch.testing.assert_close(pinball_loss(pred, target, tau), torch.tensor([0.9, 1.4, 0.35]))


def test_implicit_quantile_head_shapes_and_sampling():
    torch.manual_seed(0)
    head = ImplicitQuantileHead(8, 16, n_cos=8)
    h = torch.randn(4, 8)
    out = head(h, torch.rand(4, 5))
    assert out.shape == (4, 5)
    s = head.sample(h, torch.Generator().manual_seed(0))
    assert s.shape == (4,)
    with pytest.raises(ValueError, match="tau"):
        head(h, torch.rand(3, 5))


def test_bad_input_raises_clear_errors():
    logits, means, scales = random_params(4, 3, torch.float32)
    mix = GaussianMixture(logits, means, scales)
    with pytest.raises(ValueError, match="NaN or infinite"):
        mix.log_prob(torch.tensor([0.0, float("nan"), 1.0, 2.0]))
    with pytest.raises(ValueError, match="batch shape"):
        mix.log_prob(torch.zeros(5))
    with pytest.raises(TypeError, match="floating-point"):
        mix.log_prob(torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="share one shape"):
        GaussianMixture(logits, means[:, :2], scales)
    with pytest.raises(ValueError, match="binned range"):
        BinnedDensity(torch.zeros(2, 4), 0.0, 1.0).log_prob(torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match="tau must lie"):
        pinball_loss(torch.zeros(3), torch.zeros(3), torch.tensor([0.2, 1.0, 0.5]))
    with pytest.raises(ValueError, match="same shape"):
        pinball_loss(torch.zeros(3), torch.zeros(3), torch.full((2,), 0.5))
    with pytest.raises(ValueError, match="min_scale"):
        MixtureDensityHead(3, 2, min_scale=0.0)
    with pytest.raises(ValueError, match="num_bins"):
        BinnedDensityHead(3, 1, 0.0, 1.0)


@pytest.mark.parametrize("bad_scale", [0.0, -0.5, float("nan"), float("inf")])
def test_mixture_rejects_a_scale_that_is_not_positive(bad_scale):
    """A zero or negative scale gave NaN log densities; now it is named on construction."""
    logits, means, scales = random_params(4, 3, torch.float32)
    scales[2, 1] = bad_scale
    with pytest.raises(ValueError, match="scales must be finite and > 0"):
        GaussianMixture(logits, means, scales)


def test_mixture_rejects_nan_logits_and_means_but_allows_zero_weights():
    logits, means, scales = random_params(4, 3, torch.float32)
    bad = logits.clone()
    bad[1, 0] = float("nan")
    with pytest.raises(ValueError, match="logits hold NaN"):
        GaussianMixture(bad, means, scales)
    bad[1, 0] = float("inf")
    with pytest.raises(ValueError, match="logits hold NaN or \\+inf"):
        GaussianMixture(bad, means, scales)
    with pytest.raises(ValueError, match="all -inf"):
        GaussianMixture(torch.full_like(logits, -math.inf), means, scales)
    bad_means = means.clone()
    bad_means[0, 2] = float("nan")
    with pytest.raises(ValueError, match="means holds NaN"):
        GaussianMixture(logits, bad_means, scales)
    # a logit of -inf is a weight of zero: the density is that of the other components
    zero = logits.clone()
    zero[:, 0] = -math.inf
    y = torch.randn(4)
    got = GaussianMixture(zero, means, scales).log_prob(y)
    want = GaussianMixture(zero[:, 1:], means[:, 1:], scales[:, 1:]).log_prob(y)
    torch.testing.assert_close(got, want)


def test_mixture_checks_obey_the_validation_switch():
    from arnb.validation import validation

    logits, means, scales = random_params(4, 3, torch.float32)
    with validation(False):  # the training loop's hot path: no value checks, no GPU syncs
        mix = GaussianMixture(logits, means, -scales)
    assert torch.isnan(mix.log_prob(torch.zeros(4))).all()


def test_binned_sample_lands_on_the_logits_device_and_dtype():
    logits = torch.zeros(5, 4, dtype=torch.float64)
    s = BinnedDensity(logits, 0.0, 1.0).sample(torch.Generator().manual_seed(0))
    assert s.dtype == torch.float64 and s.device == logits.device and s.shape == (5,)
    if torch.cuda.is_available():  # pragma: no cover - on a GPU machine
        s = BinnedDensity(logits.cuda(), 0.0, 1.0).sample(torch.Generator().manual_seed(0))
        assert s.is_cuda
