"""Chapter 3's notebook builds the MDN and the AIQN's conditionals in front of the reader
(cells tagged ``builds-model``); they must stay equal to the library's classes."""

from pathlib import Path

import pytest
import torch
from torch import nn

from arnb.distributions import mixture_log_prob
from arnb.models import AIQN, MDN, AIQNConfig, MDNConfig
from arnb.testing import notebook_namespace

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "03_continuous.ipynb"


@pytest.fixture(scope="module")
def ns() -> dict:
    return notebook_namespace(NOTEBOOK)


def test_mixture_log_prob_is_the_library_s(ns):
    g = torch.Generator().manual_seed(0)
    logits, means = torch.randn(5, 4, generator=g), 3 * torch.randn(5, 4, generator=g)
    scales = torch.rand(5, 4, generator=g) + 1e-3
    y = torch.tensor([0.1, 60.0, -1000.0, 2.0, -3.0])  # far tails included
    ours = ns["my_mixture_log_prob"](logits, means, scales, y)
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours, mixture_log_prob(logits, means, scales, y), rtol=0, atol=0)


@pytest.mark.parametrize("depth, components, min_scale", [(1, 2, 1e-3), (2, 5, 0.05)])
def test_notebook_mdn_equals_library_mdn(ns, depth, components, min_scale):
    config = MDNConfig(
        in_features=2, hidden=8, depth=depth, num_components=components, min_scale=min_scale
    )
    torch.manual_seed(1)
    mine = ns["MyMDN"](2, config.hidden, depth, components, min_scale)
    library = MDN(config)
    library.load_state_dict(mine.state_dict())  # strict: the parameter names agree
    x, y = torch.randn(16, 2), 4 * torch.randn(16)
    with torch.no_grad():
        torch.testing.assert_close(
            mine.log_prob(y, x), library.log_prob(y, context=x), rtol=0, atol=0
        )
    # the floor: a raw scale of -50 gives exactly min_scale in both
    with torch.no_grad():
        mine.head.proj.bias[2 * components :] = -50.0
        library.load_state_dict(mine.state_dict())
        scales = mine.head(mine.body(x))[2]
        torch.testing.assert_close(scales, torch.full_like(scales, min_scale))
        torch.testing.assert_close(library(x).scales, scales, rtol=0, atol=0)


@pytest.mark.parametrize("dims", [2, 3])
def test_notebook_quantile_conditionals_equal_library_aiqn(ns, dims):
    config = AIQNConfig(dims=dims, hidden=8, depth=2, n_cos=4)
    torch.manual_seed(2)
    mine = nn.ModuleList(
        ns["MyQuantileConditional"](d, config.hidden, config.depth, config.n_cos)
        for d in range(dims)
    )
    library = AIQN(config)
    library.conditionals.load_state_dict(mine.state_dict())
    x, tau = torch.randn(6, dims), torch.rand(6, dims, 3)
    with torch.no_grad():
        ours = torch.stack([mine[d](x[:, :d], tau[:, d]) for d in range(dims)], dim=1)
        torch.testing.assert_close(ours, library(x, tau), rtol=0, atol=0)
        # and sampling with the notebook's conditionals follows the same quantiles
        drawn = library.sample(4, generator=torch.Generator().manual_seed(3))
        g = torch.Generator().manual_seed(3)
        levels = torch.cat([torch.rand(4, 1, generator=g) for _ in range(dims)], dim=1)
        again = torch.stack(
            [mine[d](drawn[:, :d], levels[:, d : d + 1])[:, 0] for d in range(dims)], dim=1
        )
    torch.testing.assert_close(again, drawn, rtol=0, atol=1e-6)
