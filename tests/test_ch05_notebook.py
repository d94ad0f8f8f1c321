"""Chapter 5: the model the notebook builds in front of the reader is arnb's GatedPixelCNN.

The notebook's ``builds-model`` cells (masks, ``MaskedConv2d``, the two stacks, the gated unit,
the assembled model) run in a fresh namespace; the same weights are loaded into
:class:`arnb.models.GatedPixelCNN` and every output must agree.
"""

from pathlib import Path

import pytest
import torch

from arnb.models import GatedPixelCNN, PixelCNNConfig
from arnb.models import pixelcnn as library
from arnb.testing import assert_causal, dependency_matrix, notebook_namespace

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "05_pixelcnn.ipynb"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ns():
    return notebook_namespace(NOTEBOOK)


CONFIGS = {
    "binary": PixelCNNConfig(height=7, width=6, num_classes=2, hidden=6, layers=3),
    "8-bit": PixelCNNConfig(height=6, width=6, num_classes=256, hidden=4, layers=2),
    "rgb-labels-dilated": PixelCNNConfig(
        channels=3,
        height=7,
        width=8,
        num_classes=4,
        hidden=6,
        layers=3,
        first_kernel=5,
        dilations=(1, 2, 1),
        num_labels=10,
    ),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_notebook_model_equals_library_model(ns, name):
    cfg = CONFIGS[name]
    torch.manual_seed(0)
    mine = ns["GatedPixelCNN"](cfg).double()
    theirs = GatedPixelCNN(cfg).double()
    assert set(mine.state_dict()) == set(theirs.state_dict())
    theirs.load_state_dict(mine.state_dict())  # strict
    x = torch.randint(cfg.num_classes, (4, cfg.channels, cfg.height, cfg.width))
    label = torch.randint(cfg.num_labels, (4,)) if cfg.num_labels else None
    ours, lib = mine(x, label=label), theirs(x, label=label)
    assert ours.shape == lib.shape
    # the library skips kernel rows its masks hide, so float64 sums may differ in the last bits
    torch.testing.assert_close(ours, lib, rtol=0, atol=1e-12)
    # and back: the library's weights in the notebook's model
    theirs2 = GatedPixelCNN(cfg).double()
    mine.load_state_dict(theirs2.state_dict())
    torch.testing.assert_close(mine(x, label=label), theirs2(x, label=label), rtol=0, atol=1e-12)


def test_notebook_masks_equal_library_masks(ns):
    for args in [(1, 1, 5), (3, 12, 7), (12, 24, 3), (12, 24, (1, 3)), (24, 24, 1), (6, 6, (3, 5))]:
        for kind in "AB":
            for groups in (1, 3):
                if args[0] % groups or args[1] % groups:
                    continue
                assert torch.equal(
                    ns["causal_mask"](*args, kind, groups),
                    library.causal_mask(*args, kind, groups),
                ), (args, kind, groups)
    for first in (True, False):
        assert torch.equal(
            ns["vertical_mask"](4, 8, 5, first), library.vertical_mask(4, 8, 5, first)
        )


def test_notebook_masked_conv_is_causal_and_matches_library(ns):
    torch.manual_seed(0)
    x = torch.rand(3, 5, 5, dtype=torch.float64) * 2 - 1
    order = library.raster_order(3, 5, 5)
    for kind in "AB":
        mine = ns["masked_conv"](3, 6, 3, kind, 3, 2).double()
        theirs = library.masked_conv(3, 6, 3, kind, 3, 2).double()
        theirs.load_state_dict(mine.state_dict())
        torch.testing.assert_close(mine(x[None]), theirs(x[None]), rtol=0, atol=1e-12)
        dep = dependency_matrix(lambda h, m=mine: m(h.double()).flatten(1), x)
        out_order = library.raster_order(6, 5, 5)  # output channel k has colour k % 3
        out_order = (out_order // 6) * 3 + torch.arange(6).repeat_interleave(25) % 3
        assert_causal(dep, order, out_order, strict=kind == "A")


def test_notebook_model_is_causal(ns):
    torch.manual_seed(0)
    cfg = CONFIGS["rgb-labels-dilated"]
    model = ns["GatedPixelCNN"](cfg)
    label = torch.tensor([3])

    def conditionals(h):
        return model.logits_from_float(h, label).movedim(1, -1).reshape(1, cfg.dims, -1)

    dep = dependency_matrix(conditionals, torch.rand(cfg.channels, cfg.height, cfg.width))
    order = library.raster_order(cfg.channels, cfg.height, cfg.width)
    assert_causal(dep, order, order)
    assert dep.sum() > 0
