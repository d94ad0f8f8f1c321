"""Chapter 1: the training loop the notebook writes out is the library's loop.

``fit_by_hand`` comes from the notebook's ``builds-model`` cells; with the schedule's extras
switched off (constant rate, no clipping), :func:`arnb.train.train` must give the same weights
and losses to the last bit, from the same start and the same batches.
"""

from pathlib import Path

import pytest
import torch

from arnb.models.fvsbn import FVSBN
from arnb.models.made import MADE, MADEConfig
from arnb.testing import notebook_namespace
from arnb.train import Schedule, train

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "01_factorization.ipynb"


@pytest.fixture(scope="module")
def ns():
    return notebook_namespace(NOTEBOOK)


def _batches(dims: int, steps: int = 25, size: int = 32):
    g = torch.Generator().manual_seed(0)
    probs = torch.linspace(0.1, 0.9, dims)
    data = (torch.rand(400, dims, generator=g) < probs).long()
    return [data[torch.randint(0, len(data), (size,), generator=g)] for _ in range(steps)]


@pytest.mark.parametrize(
    "make", [lambda: FVSBN(9), lambda: MADE(MADEConfig(9, hidden=(16,)))], ids=["fvsbn", "made"]
)
def test_loop_by_hand_equals_library_loop(ns, make):
    batches = _batches(9)
    torch.manual_seed(0)
    by_hand = make()
    by_library = make()
    by_library.load_state_dict(by_hand.state_dict())
    losses = ns["fit_by_hand"](by_hand, batches, lr=0.05)
    plain = Schedule(steps=len(batches), lr=0.05, grad_clip=None, min_lr_ratio=1.0, log_every=1)
    history = train(by_library, lambda m, x: -m.log_prob(x).mean(), batches, plain, progress=False)
    for a, b in zip(by_hand.state_dict().values(), by_library.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert history.train == losses
    assert losses[-1] < losses[0]  # and it does learn
