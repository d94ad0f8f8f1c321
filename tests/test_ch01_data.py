"""Tiny binarized MNIST: the stated protocol on the real files."""

import pytest
import torch

from arnb.data.tiny_mnist import (
    THRESHOLD,
    VALIDATION_SIZE,
    pattern_codes,
    pattern_stats,
    shrink,
    tiny_binary_mnist,
    tiny_mnist_splits,
)


def test_shrink_averages_blocks_exactly():
    img = torch.zeros(1, 1, 28, 28, dtype=torch.long)
    img[..., :7, :7] = 255
    img[..., 7:14, :7] = 100
    small = shrink(img, 4)
    assert small.shape == (1, 1, 4, 4)
    assert small[0, 0, 0, 0] == 255 and small[0, 0, 1, 0] == 100 and small[0, 0].sum() == 355
    with pytest.raises(ValueError, match="shape"):
        shrink(torch.zeros(28, 28, dtype=torch.long), 4)
    with pytest.raises(ValueError, match="size"):
        shrink(img, 0)


@pytest.fixture(scope="module")
def splits():
    return tiny_mnist_splits(4)


def test_splits_are_binary_and_sized(splits):
    assert splits.train.shape == (60000 - VALIDATION_SIZE, 16)
    assert splits.val.shape == (VALIDATION_SIZE, 16) and splits.test.shape == (10000, 16)
    for x in (splits.train, splits.val, splits.test):
        assert x.dtype == torch.long and set(x.unique().tolist()) <= {0, 1}
    assert splits.images(splits.test[:3]).shape == (3, 1, 4, 4)
    # the 4x4 digits are inked in the middle and blank at the corners
    mean = splits.train.float().mean(0).reshape(4, 4)
    assert mean[1:3, 1:3].mean() > 3 * mean[[0, 0, 3, 3], [0, 3, 0, 3]].mean()


def test_threshold_protocol_is_as_stated(splits):
    from arnb.data import load_mnist

    x, _ = load_mnist("test")
    want = (shrink(x[:100], 4) >= THRESHOLD).long().flatten(1)
    assert torch.equal(splits.test[:100], want)


def test_bernoulli_protocol_is_deterministic():
    a = tiny_binary_mnist("test", 5, method="bernoulli")
    b = tiny_binary_mnist("test", 5, method="bernoulli")
    assert a.shape == (10000, 25) and torch.equal(a, b)
    with pytest.raises(ValueError, match="method"):
        tiny_binary_mnist("test", 4, method="round")


def test_pattern_codes_and_stats():
    x = torch.tensor([[1, 0, 1], [0, 0, 1], [1, 0, 1]])
    assert pattern_codes(x).tolist() == [5, 1, 5]
    st = pattern_stats(x, torch.tensor([[1, 0, 1], [1, 1, 1]]))
    assert st["distinct_train_patterns"] == 2 and st["test_unseen_fraction"] == 0.5
    with pytest.raises(ValueError, match="62"):
        pattern_codes(torch.zeros(1, 63, dtype=torch.long))


def test_image_grid_lays_out_images_with_white_gaps():
    import matplotlib

    matplotlib.use("Agg")
    from arnb.plotting import image_grid

    images = torch.zeros(10, 1, 4, 4, dtype=torch.long)
    images[3] = 1
    ax = image_grid(images, nrow=8, pad=1)
    grid = ax.get_images()[0].get_array()
    assert grid.shape == (2 * 5 + 1, 8 * 5 + 1)  # 2 rows of 8, 1-pixel gaps and border
    assert grid[0].min() == 1 and grid[:, 0].min() == 1  # white border
    assert grid[1:5, 1:5].max() == 0 and grid[1:5, 16:20].min() == 1  # image 0 black, 3 white
    assert grid[6:10, 16:40].min() == 1  # the unused cells of the last row are white
    rgb = image_grid(torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)).get_images()[0]
    assert rgb.get_array().shape == (6, 11, 3)


def test_image_grid_defaults_to_a_square_grid():
    import matplotlib

    matplotlib.use("Agg")
    from arnb.plotting import image_grid

    for n, side in [(16, 4), (64, 8), (10, 4), (2, 2)]:
        grid = image_grid(torch.zeros(n, 1, 4, 4)).get_images()[0].get_array()
        rows = -(-n // side)
        assert grid.shape == (rows * 5 + 1, side * 5 + 1), n
