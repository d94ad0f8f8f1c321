"""Chapter 5: coloured MNIST (the exercise checkers are tested in test_ch05_exercises.py)."""

import pytest
import torch

from arnb.data.colored_mnist import colorize, draw_colors, load_colored_mnist


def test_colorize_is_deterministic_and_in_range():
    images = torch.randint(256, (50, 1, 6, 6))
    a, b = colorize(images, 2, seed=5), colorize(images, 2, seed=5)
    assert torch.equal(a, b) and a.shape == (50, 3, 6, 6)
    assert a.min() >= 0 and a.max() <= 3
    # full-intensity pixels take the foreground colour, zero pixels the background colour,
    # and the two differ by at least half the levels in some channel
    full = torch.full((4, 1, 2, 2), 255)
    full[:, :, 0, 0] = 0
    c = colorize(full, 3, seed=1)
    fg, bg = c[:, :, 1, 1], c[:, :, 0, 0]
    assert ((fg - bg).abs().amax(1) >= 4).all()
    assert not torch.equal(colorize(images, 2, seed=6), a)
    with pytest.raises(ValueError, match="bits"):
        colorize(images, 0, seed=0)
    with pytest.raises(ValueError, match="shape"):
        colorize(images[:, 0], 2, seed=0)


def test_draw_colors_are_the_colours_colorize_paints():
    full = torch.full((30, 1, 2, 2), 255)
    full[:, :, 0, 0] = 0
    c = colorize(full, 2, seed=3)
    fg, bg = draw_colors(30, 2, seed=3)
    assert fg.shape == bg.shape == (30, 3)
    assert torch.equal(c[:, :, 1, 1], fg) and torch.equal(c[:, :, 0, 0], bg)


def test_load_colored_mnist():
    x, y = load_colored_mnist("test", bits=2, size=14)
    assert x.shape == (10000, 3, 14, 14) and x.dtype == torch.long and y.shape == (10000,)
    assert x.min() == 0 and x.max() == 3
    with pytest.raises(ValueError, match="size"):
        load_colored_mnist("test", size=7)
