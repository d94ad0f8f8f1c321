"""Coloured MNIST: digits painted in a random foreground colour on a random background colour.

A small RGB data set generated deterministically from MNIST, to show a PixelCNN's channel
ordering at work: within one pixel, G depends on R and B on R and G. Each channel holds
``bits`` bits (``2**bits`` levels), so a categorical head with few classes suffices.

Protocol (fixed, stated once): for image n of a split, a generator seeded with the split's seed
(train: 10, test: 11) draws a foreground and a background colour, each channel uniform in
``{0..L-1}`` (``L = 2**bits``), redrawing the background until it differs from the foreground by
at least ``L // 2`` levels in some channel (so the digit stays visible). A pixel of MNIST
intensity ``m = v / 255`` becomes ``round(m * fg + (1 - m) * bg)`` per channel. With ``size=14``
the 28x28 digit is first averaged over 2x2 blocks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .mnist import load_mnist

COLOR_SEEDS = {"train": 10, "test": 11}


def draw_colors(n: int, bits: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The foreground and background colours of ``n`` images, each ``(n, 3)`` long in
    ``[0, 2**bits - 1]``, as :func:`colorize` draws them (image k's colours depend on ``n``:
    draw for the whole split, then index)."""
    if not 1 <= bits <= 8:
        raise ValueError(f"bits must be in 1..8, got {bits}")
    levels = 2**bits
    g = torch.Generator().manual_seed(seed)
    fg = torch.randint(levels, (n, 3), generator=g)
    bg = torch.randint(levels, (n, 3), generator=g)
    # Redraw backgrounds too close to their foreground (a fixed number of rounds keeps it
    # deterministic; the few left over are pushed away from the foreground in channel 0).
    for _ in range(20):
        close = (fg - bg).abs().amax(1) < levels // 2
        if not close.any():
            break
        bg[close] = torch.randint(levels, (int(close.sum()), 3), generator=g)
    close = (fg - bg).abs().amax(1) < levels // 2
    bg[close, 0] = torch.where(fg[close, 0] < levels // 2, levels - 1, 0)
    return fg, bg


def colorize(images: torch.Tensor, bits: int, seed: int) -> torch.Tensor:
    """``images (N, 1, H, W)`` long in [0, 255] -> ``(N, 3, H, W)`` long in ``[0, 2**bits - 1]``."""
    if images.dim() != 4 or images.shape[1] != 1:
        raise ValueError(f"images must have shape (N, 1, H, W), got {tuple(images.shape)}")
    fg, bg = draw_colors(images.shape[0], bits, seed)
    m = images.float() / 255.0
    out = m * fg[:, :, None, None] + (1 - m) * bg[:, :, None, None]
    return out.round().long().clamp_(0, 2**bits - 1)


def load_colored_mnist(
    split: str = "train", bits: int = 2, size: int = 28
) -> tuple[torch.Tensor, torch.Tensor]:
    """Coloured MNIST ``(N, 3, size, size)`` long in ``[0, 2**bits - 1]`` and labels ``(N,)``.

    ``size`` is 28 (original) or 14 (2x2 averages, four times fewer pixels to model).
    """
    if size not in (14, 28):
        raise ValueError(f"size must be 28 or 14, got {size}")
    x, y = load_mnist(split)
    if size == 14:
        x = F.avg_pool2d(x.float(), 2).round().long()
    return colorize(x, bits, COLOR_SEEDS[split]), y
