"""The network and objectives written in front of the reader in 07_any_order equal arnb's."""

from pathlib import Path

import pytest
import torch

from arnb.models.any_order import AnyOrderConfig, AnyOrderNet
from arnb.testing import all_configurations, notebook_namespace

NB = Path(__file__).resolve().parent.parent / "notebooks" / "07_any_order.ipynb"


@pytest.fixture(scope="module")
def ns():
    return notebook_namespace(NB)


@pytest.fixture(scope="module")
def pair(ns):
    torch.manual_seed(0)
    net = ns["MaskedInputMLP"](6, hidden=(10, 10)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3)
    lib = AnyOrderNet(AnyOrderConfig(dims=6, hidden=(10, 10))).double()
    missing, unexpected = lib.load_state_dict(net.state_dict(), strict=False)
    assert set(missing) == {"order", "rank"} and not unexpected
    return net, lib


def test_conditionals_equal(pair):
    net, lib = pair
    x = all_configurations(6, 2)
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        observed = (torch.rand(6, generator=g) < 0.5).float()
        torch.testing.assert_close(net(x, observed), lib.conditionals(x, observed), rtol=0, atol=0)


def test_log_prob_in_order_equals_and_is_normalised(ns, pair):
    net, lib = pair
    x = all_configurations(6, 2)
    for order in ([0, 1, 2, 3, 4, 5], [5, 3, 1, 0, 2, 4]):
        with torch.no_grad():
            ours = ns["log_prob_in_order"](net, x, order)
        # float64; the two sum the same six terms in different orders
        torch.testing.assert_close(ours, lib.log_prob(x, order=order), rtol=0, atol=1e-12)
        assert abs(float(torch.logsumexp(ours, 0).exp()) - 1) < 1e-12


def test_objectives_equal_draw_for_draw(ns, pair):
    net, lib = pair
    x = torch.randint(0, 2, (32, 6), generator=torch.Generator().manual_seed(2))
    ours = ns["any_order_bound"](net, x, torch.Generator().manual_seed(3))
    theirs = lib.any_order_bound(x, torch.Generator().manual_seed(3))
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    ours = ns["masked_nll"](net, x, torch.Generator().manual_seed(4))
    theirs = lib.masked_nll(x, torch.Generator().manual_seed(4))
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
