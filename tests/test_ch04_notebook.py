"""Chapter 4: the model the notebook writes in front of the reader is the library's, piece by piece.

``notebook_namespace`` runs exactly the notebook's ``builds-model`` cells; each test loads or
feeds the same numbers into the library (:class:`StrokeMixture`, :class:`RNNMDN`) and asserts
identical results, so a change on either side that breaks the equality fails here.
"""

from pathlib import Path

import pytest
import torch

from arnb.distributions import StrokeMixture
from arnb.models import RNNMDN
from arnb.testing import assert_causal, dependency_matrix, notebook_namespace

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "04_rnn_mdn.ipynb"
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def nb():
    return notebook_namespace(NOTEBOOK)


def extreme_raw(m: int, n: int = 600, seed: int = 0) -> torch.Tensor:
    """Head outputs ``(n, 6m+1)`` in float64: ordinary, sigma below its floor, |rho| at 1."""
    g = torch.Generator().manual_seed(seed)
    raw = 2 * torch.randn(n, 6 * m + 1, generator=g, dtype=torch.float64)
    raw[: n // 3, 3 * m : 5 * m] = -50.0
    raw[n // 3 : 2 * n // 3, 5 * m : 6 * m] = 40.0 * torch.sign(raw[n // 3 : 2 * n // 3, :m])
    return raw


def points(n: int, seed: int = 1, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = 3 * torch.randn(n, 3, generator=g, dtype=dtype)
    x[n // 2 :, :2] *= 100.0  # far tails
    x[:, 2] = (torch.rand(n, generator=g) < 0.5).to(dtype)
    return x


def test_split_head_equals_from_raw(nb):
    for m, floor, rho_max in ((1, 1e-3, 1 - 1e-4), (4, 0.05, 0.9)):
        raw = extreme_raw(m)
        mine = nb["split_head"](raw, m, floor, rho_max)
        library = StrokeMixture.from_raw(raw, m, floor, rho_max)
        assert len(mine) == len(library)
        for a, b in zip(mine, library):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert float(mine[2].min()) >= floor and float(mine[3].abs().max()) <= rho_max


def test_bivariate_log_prob_equals_multivariate_normal(nb):
    g = torch.Generator().manual_seed(2)
    n, m = 500, 3
    xy = 3 * torch.randn(n, 2, generator=g, dtype=torch.float64)
    mu = torch.randn(n, m, 2, generator=g, dtype=torch.float64)
    sigma = torch.exp(torch.randn(n, m, 2, generator=g, dtype=torch.float64))
    rho = 0.99 * (2 * torch.rand(n, m, generator=g, dtype=torch.float64) - 1)
    s1, s2 = sigma.unbind(-1)
    c = rho * s1 * s2
    cov = torch.stack([torch.stack([s1 * s1, c], -1), torch.stack([c, s2 * s2], -1)], -2)
    want = torch.distributions.MultivariateNormal(mu, covariance_matrix=cov).log_prob(
        xy.unsqueeze(-2)
    )
    torch.testing.assert_close(
        nb["bivariate_log_prob"](xy, mu, sigma, rho), want, rtol=1e-10, atol=1e-10
    )


def test_point_log_prob_equals_library_and_torch(nb):
    m = 5
    raw = extreme_raw(m)
    x = points(len(raw))
    library = StrokeMixture.from_raw(raw, m)
    mine = nb["point_log_prob"](nb["split_head"](raw, m), x)
    torch.testing.assert_close(mine, library.log_prob(x), rtol=0, atol=0)
    mix, pen = library.as_torch()
    want = mix.log_prob(x[:, :2]) + pen.log_prob(x[:, 2])
    torch.testing.assert_close(mine, want, rtol=1e-9, atol=1e-6)
    assert bool(torch.isfinite(mine).all())


def drawings(b: int = 4, t: int = 9, seed: int = 3) -> torch.Tensor:
    x = points(b * t, seed=seed, dtype=torch.float32).reshape(b, t, 3)
    x[..., :2] /= 100.0
    return x


@pytest.mark.parametrize("hidden, components", [(8, 1), (6, 3)])
def test_lstm_mdn_equals_rnnmdn_both_ways(nb, hidden, components):
    torch.manual_seed(0)
    mine = nb["LSTMMDN"](hidden, components)
    library = RNNMDN(hidden=hidden, components=components)
    library.load_state_dict(mine.state_dict())  # strict
    x = drawings()
    with torch.no_grad():
        torch.testing.assert_close(mine(x), library(x), rtol=0, atol=0)
        torch.testing.assert_close(mine.log_prob(x), library.log_prob(x), rtol=0, atol=0)
    # and back: a library model's weights load into the notebook's model
    torch.manual_seed(1)
    library = RNNMDN(hidden=hidden, components=components)
    mine.load_state_dict(library.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(mine.log_prob(x), library.log_prob(x), rtol=0, atol=0)


def test_lstm_mdn_is_causal(nb):
    torch.manual_seed(0)
    mine = nb["LSTMMDN"](5, 2)
    dep = dependency_matrix(mine, drawings(1, 7)[0]).reshape(7, 7, 3).any(-1)
    assert_causal(dep)
    assert bool(dep[1:, 0].all())  # and it does read the past


@pytest.mark.parametrize("n, length", [(1, 1), (5, 12)])
def test_sampler_reproduces_library_draw_for_draw(nb, n, length):
    torch.manual_seed(4)
    library = RNNMDN(hidden=7, components=3)
    mine = nb["LSTMMDN"](7, 3)
    mine.load_state_dict(library.state_dict())
    ours = nb["sample_drawings"](mine, n, length, torch.Generator().manual_seed(5))
    theirs = library.sample(n, length=length, generator=torch.Generator().manual_seed(5))
    assert ours.shape == (n, length, 3)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    assert set(ours[..., 2].unique().tolist()) <= {0.0, 1.0}


def test_sample_step_continues_from_a_state(nb):
    """One step from a state after a prompt equals the library's next draw."""
    torch.manual_seed(6)
    library = RNNMDN(hidden=6, components=2)
    mine = nb["LSTMMDN"](6, 2)
    mine.load_state_dict(library.state_dict())
    prompt = drawings(1, 4)[0]
    g = torch.Generator().manual_seed(7)
    theirs = library.sample(3, prompt=prompt, length=5, generator=g)[:, 4]
    with torch.no_grad():
        inputs = torch.cat([mine.start.expand(3, 1, 3), prompt[:3].expand(3, 3, 3)], 1)
        _, state = mine.rnn(inputs)
    nxt, _ = nb["sample_step"](
        mine, prompt[3].expand(3, 3), state, torch.Generator().manual_seed(7)
    )
    torch.testing.assert_close(nxt, theirs, rtol=0, atol=0)
