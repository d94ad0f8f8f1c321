"""Chapter 4: the bivariate mixture + pen head, the RNN-MDN and its baselines."""

import math

import pytest
import torch

from arnb.distributions import StrokeMixture, bivariate_normal_log_prob
from arnb.models.rnn_mdn import RNNMDN, ContextFreeMixture
from arnb.testing import assert_causal, dependency_matrix
from arnb.train import Schedule, train

FLOOR, RHO_MAX = 1e-3, 1 - 1e-4


def random_params(shape=(5, 7), m=4, seed=0, dtype=torch.float64, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    raw = torch.randn(*shape, 6 * m + 1, generator=g, dtype=dtype) * scale
    return StrokeMixture.from_raw(raw, m, FLOOR, RHO_MAX).map(lambda t: t.to(dtype))


def random_points(shape=(5, 7), seed=1, dtype=torch.float64, spread=3.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, 3, generator=g, dtype=dtype) * spread
    x[..., 2] = (torch.rand(shape, generator=g) < 0.3).to(dtype)
    return x


def reference_log_prob(params, x):
    mix, pen = params.as_torch()
    return mix.log_prob(x[..., :2]) + pen.log_prob(x[..., 2])


def test_mixture_log_prob_matches_torch_distributions():
    p, x = random_params(), random_points()
    torch.testing.assert_close(p.log_prob(x), reference_log_prob(p, x), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "case", ["far_tail", "sigma_at_floor", "rho_near_one", "rho_near_minus_one"]
)
def test_mixture_log_prob_extremes(case):
    m = 3
    raw = torch.randn(4, 6 * m + 1, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    x = random_points((4,), seed=3)
    if case == "far_tail":
        x[:, :2] = torch.tensor(
            [[1e3, -1e3], [5e2, 5e2], [-3e2, 1e1], [0.0, 2e3]], dtype=torch.float64
        )
    if case == "sigma_at_floor":
        raw[:, 3 * m : 5 * m] = -60.0  # softplus -> 0, sigma = floor exactly
        x[:, :2] = x[:, :2] * 1e-3
    if case == "rho_near_one":
        raw[:, 5 * m : 6 * m] = 30.0  # tanh -> 1, clamped to rho_max
    if case == "rho_near_minus_one":
        raw[:, 5 * m : 6 * m] = -30.0
    p = StrokeMixture.from_raw(raw, m, FLOOR, RHO_MAX).map(lambda t: t.double())
    if case == "sigma_at_floor":
        assert torch.allclose(p.sigma, torch.full_like(p.sigma, FLOOR))
    if case.startswith("rho"):
        assert torch.allclose(p.rho.abs(), torch.full_like(p.rho, RHO_MAX))
    ours, ref = p.log_prob(x), reference_log_prob(p, x)
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-12)


def test_float32_head_stays_finite_at_extremes():
    """The float32 path (what training uses) gives finite values where float64 is the truth."""
    m = 2
    raw = torch.zeros(3, 6 * m + 1)
    raw[:, 3 * m : 5 * m] = -80.0
    raw[:, 5 * m :] = 40.0
    p = StrokeMixture.from_raw(raw, m, FLOOR, RHO_MAX)
    x = torch.tensor([[1e4, -1e4, 1.0], [0.0, 0.0, 0.0], [1e-3, -1e-3, 1.0]])
    lp = p.log_prob(x)
    assert torch.isfinite(lp).all()
    ref = p.map(lambda t: t.double()).log_prob(x.double())
    torch.testing.assert_close(lp.double(), ref, rtol=1e-5, atol=1e-5)


def test_bivariate_formula_against_multivariate_normal():
    mu, sigma = torch.tensor([[0.3, -1.0]]), torch.tensor([[0.5, 2.0]])
    rho = torch.tensor([0.8])
    xy = torch.tensor([1.0, 0.5])
    cov = torch.tensor([[0.25, 0.8 * 1.0], [0.8 * 1.0, 4.0]])
    ref = torch.distributions.MultivariateNormal(mu[0], cov).log_prob(xy)
    torch.testing.assert_close(bivariate_normal_log_prob(xy, mu, sigma, rho)[0], ref)


def test_sampling_moments_and_weights_match_fixed_head():
    # two well separated components, so each sample's component is recognisable
    logit_pi = torch.log(torch.tensor([0.3, 0.7]))
    mu = torch.tensor([[-5.0, 0.0], [5.0, 2.0]])
    sigma = torch.tensor([[0.5, 1.0], [1.5, 0.7]])
    rho = torch.tensor([0.6, -0.8])
    n = 40000
    p = StrokeMixture(
        logit_pi.expand(n, 2),
        mu.expand(n, 2, 2),
        sigma.expand(n, 2, 2),
        rho.expand(n, 2),
        torch.full((n,), math.log(0.2 / 0.8)),
    )
    s = p.sample(torch.Generator().manual_seed(0))
    first = s[:, 0] < 0
    assert abs(first.float().mean() - 0.3) < 0.01  # weights (sd of the estimate 0.0023)
    assert abs(s[:, 2].mean() - 0.2) < 0.01  # pen probability
    assert set(s[:, 2].unique().tolist()) <= {0.0, 1.0}
    for k, sel in enumerate([first, ~first]):
        xy = s[sel, :2]
        torch.testing.assert_close(xy.mean(0), mu[k], atol=0.05, rtol=0)
        torch.testing.assert_close(xy.std(0), sigma[k], atol=0.05, rtol=0)
        corr = torch.corrcoef(xy.T)[0, 1]
        assert abs(corr - rho[k]) < 0.03


def test_bias_and_temperature_do_what_they_say():
    p = random_params((3,), m=4, dtype=torch.float32)
    same = p.adjust(0.0, 1.0)
    for a, b in zip(same, p):
        torch.testing.assert_close(a, b)
    sharp = p.adjust(bias=1.0)
    torch.testing.assert_close(sharp.sigma, p.sigma * math.exp(-1.0))
    # the largest weight grows
    assert (sharp.logit_pi.softmax(-1).amax(-1) >= p.logit_pi.softmax(-1).amax(-1) - 1e-7).all()
    cool = p.adjust(temperature=0.25)
    torch.testing.assert_close(cool.sigma, p.sigma * 0.5)
    torch.testing.assert_close(cool.pen_logit, p.pen_logit * 4)
    with pytest.raises(ValueError, match="temperature"):
        p.adjust(temperature=0.0)
    with pytest.raises(ValueError, match="bias"):
        p.adjust(bias=-1.0)


def small_model(**kw):
    torch.manual_seed(0)
    return RNNMDN(hidden=8, components=3, **kw)


def test_rnn_mdn_is_causal_by_gradients():
    model = small_model()
    x = random_points((6,), dtype=torch.float32)
    dep = dependency_matrix(lambda z: model(z.view(1, 6, 3)), x)  # (6 outputs, 18 inputs)
    dep = dep.view(6, 6, 3).any(-1)
    assert_causal(dep)
    assert dep[5, :5].all()  # and it does use the past (a model that ignores it is wrong too)


def test_rnn_mdn_prediction_unchanged_when_future_changes():
    model = small_model()
    x = random_points((2, 9), dtype=torch.float32)
    base = model(x)
    for t in range(9):
        y = x.clone()
        y[:, t:, :2] += 5.0
        y[:, t:, 2] = 1 - y[:, t:, 2]
        out = model(y)
        torch.testing.assert_close(out[:, : t + 1], base[:, : t + 1], atol=0, rtol=0)
        if t + 1 < 9:
            assert not torch.allclose(out[:, t + 1 :], base[:, t + 1 :])


def test_log_prob_is_sum_of_conditionals_with_mask():
    model = small_model()
    x = random_points((3, 6), dtype=torch.float32)
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] + [0] * 5], dtype=torch.bool)
    full = model.log_prob(x, mask=mask)
    for i, n in enumerate(mask.sum(1).tolist()):
        torch.testing.assert_close(full[i], model.log_prob(x[i : i + 1, :n])[0])
    # the padding's values do not matter
    y = x.clone()
    y[~mask] = 0.0
    torch.testing.assert_close(model.log_prob(y, mask=mask), full)
    # the training loss is the mean over real points
    torch.testing.assert_close(model.nll(x, mask=mask), -full.sum() / mask.sum())


@pytest.mark.parametrize("junk", [float("nan"), 1e30, float("inf")])
def test_padding_is_ignored_whatever_it_holds(junk):
    """NaN or 1e30 in masked-out padding made log_prob, the NLL and the gradients NaN."""
    for model in (small_model(), ContextFreeMixture(components=2)):
        x = random_points((2, 6), dtype=torch.float32)
        mask = torch.tensor([[1] * 6, [1] * 3 + [0] * 3], dtype=torch.bool)
        clean = model.log_prob(x, mask=mask)
        dirty = x.clone()
        dirty[1, 3:] = junk
        torch.testing.assert_close(model.log_prob(dirty, mask=mask), clean)
        loss = model.nll(dirty, mask=mask)
        loss.backward()
        assert torch.isfinite(loss)
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_stepwise_recurrence_equals_teacher_forcing():
    """The sampler's one-step path (the cache) gives the same conditionals as forward."""
    model = small_model()
    x = random_points((2, 5), dtype=torch.float32)
    params = model.conditionals(x)
    prev, state = model.start.expand(2, 3), None
    for t in range(5):
        p, state = model.step(prev, state)
        for a, b in zip(p, params.map(lambda v, t=t: v[:, t])):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
        prev = x[:, t]


def test_sample_protocol_prompt_and_determinism():
    model = small_model()
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    a = model.sample(4, generator=g(), length=7)
    b = model.sample(4, generator=g(), length=7)
    assert a.shape == (4, 7, 3) and torch.equal(a, b)
    assert torch.isfinite(a).all() and set(a[..., 2].unique().tolist()) <= {0.0, 1.0}
    prompt = random_points((3,), dtype=torch.float32)
    s = model.sample(4, prompt=prompt, generator=g(), length=7, bias=2.0)
    assert torch.equal(s[:, :3], prompt.expand(4, 3, 3))
    assert torch.isfinite(model.log_prob(s)).all()
    with pytest.raises(ValueError, match="prompt"):
        model.sample(2, prompt=random_points((9,), dtype=torch.float32), length=5)


def test_context_free_baseline_ignores_context():
    torch.manual_seed(0)
    model = ContextFreeMixture(components=3)
    x = random_points((2, 5), dtype=torch.float32)
    out = model(x)
    assert torch.equal(out[:, 0], out[:, 4])
    lp = model.point_log_prob(x)
    y = x.clone()
    y[:, :4] = random_points((2, 4), seed=9, dtype=torch.float32)  # all but the last point
    torch.testing.assert_close(model.point_log_prob(y)[:, 4], lp[:, 4])
    assert model.sample(3, length=4, generator=torch.Generator().manual_seed(0)).shape == (3, 4, 3)


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.tensor([[[0.0, float("nan"), 0.0]]]), "NaN or inf"),
        (torch.tensor([[[0.0, float("inf"), 0.0]]]), "NaN or inf"),
        (torch.zeros(1, 4, 2), "last dimension"),
        (torch.tensor([[[0.0, 0.0, 0.5]]]), "pen_lifted must be exactly 0 or 1"),
        (torch.tensor([[[0.0, 0.0, 2.0]]]), "pen_lifted must be exactly 0 or 1"),
        (torch.zeros(1, 0, 3), "empty sequence"),
        (torch.zeros(4, 3), r"\(B, T, 3\)"),
    ],
)
def test_bad_strokes_raise_clear_errors(bad, match):
    for model in (small_model(), ContextFreeMixture(components=2)):
        with pytest.raises(ValueError, match=match):
            model.log_prob(bad)


def test_mask_with_an_empty_row_is_an_error():
    with pytest.raises(ValueError, match="empty sequence"):
        small_model().log_prob(
            torch.zeros(2, 3, 3), mask=torch.tensor([[1, 1, 0], [0, 0, 0]], dtype=torch.bool)
        )
    with pytest.raises(ValueError, match="mask must have shape"):
        small_model().log_prob(torch.zeros(2, 3, 3), mask=torch.ones(2, 4, dtype=torch.bool))


def test_training_beats_the_context_free_baseline_by_a_margin():
    """On a pattern where the past tells the next point, a trained RNN-MDN must beat the
    context-free mixture trained the same way by nats per point, not merely stay finite.

    The drawings walk around a circle (moves ``(cos t, sin t)`` plus noise 0.01, a pen lift
    every fifth point): knowing ``t`` from the past, the RNN can predict each move to about
    the noise, ``log(0.01)`` per coordinate; the context-free mixture sees only the marginal of
    the 20 moves on the circle.
    """
    torch.manual_seed(0)
    t = torch.linspace(0, 6.28, 20)
    base = torch.stack([torch.cos(t), torch.sin(t), (torch.arange(20) % 5 == 4).float()], -1)
    data = base.expand(16, 20, 3).clone()
    data[..., :2] += 0.01 * torch.randn(16, 20, 2)
    schedule = Schedule(steps=150, lr=2e-2)
    nll = {}
    for name, model in (
        ("rnn", RNNMDN(hidden=16, components=3)),
        ("context-free", ContextFreeMixture(components=3)),
    ):
        with torch.no_grad():
            before = float(model.nll(data))
        hist = train(model, lambda m, b: m.nll(b), [data], schedule, progress=False)
        with torch.no_grad():
            nll[name] = float(model.nll(data))
        assert nll[name] < before - 0.5, (name, before, nll[name])
        assert hist.train[-1] < hist.train[0]
    assert nll["rnn"] < nll["context-free"] - 2.0, nll


def test_protocol_signature_length_dtype_and_empty_batch():
    model = small_model()
    with pytest.raises(TypeError):
        model.sample(2, None)  # prompt, generator, length are keyword-only
    with pytest.raises(ValueError, match="length="):
        model.sample(2)
    with pytest.raises(ValueError, match="n must"):
        model.sample(0, length=3)
    assert model.log_prob(torch.zeros(0, 4, 3)).shape == (0,)
    x = random_points((2, 5), dtype=torch.float32)
    lp = model.log_prob(x)
    model.double()
    lp64 = model.log_prob(x.double())
    assert lp64.dtype == torch.float64
    torch.testing.assert_close(lp64.float(), lp, atol=1e-4, rtol=1e-5)
    s = model.sample(2, length=4, generator=torch.Generator().manual_seed(0))
    assert s.dtype == torch.float64
    with pytest.raises(ValueError, match="pen_lifted"):
        model.sample(1, prompt=torch.tensor([[0.0, 0.0, 0.5]]), length=3)


@pytest.mark.parametrize("prompt_len", [0, 1, 4])
def test_sampler_with_prompt_draws_from_the_teacher_forced_conditional(prompt_len):
    """After a prompt, the next point is drawn from exactly the conditional that forward
    computes."""
    model = small_model()
    x = random_points((1, 5), dtype=torch.float32)
    prompt = x[0, :prompt_len] if prompt_len else None
    drawn = model.sample(
        1, prompt=prompt, generator=torch.Generator().manual_seed(7), length=prompt_len + 1
    )
    params = model.conditionals(x).map(lambda v: v[:, prompt_len])
    expected = params.sample(torch.Generator().manual_seed(7))
    torch.testing.assert_close(drawn[:, prompt_len], expected, atol=1e-5, rtol=1e-5)
