"""Binarized MNIST shrunk to S x S pixels (4x4, 5x5, 7x7): small enough to enumerate.

Protocol (fixed, stated once):

1. Take the 8-bit 28x28 digits of :func:`arnb.data.load_mnist`.
2. Shrink each to ``S x S`` by averaging blocks of pixels (``adaptive_avg_pool2d``; for S = 4
   and 7 the blocks are exactly 7x7 and 4x4 pixels, for S = 5 they are 5 or 6 pixels wide and
   overlap by one), round to an integer intensity in [0, 255].
3. Binarize, by default (``method="threshold"``) deterministically: a pixel is 1 when its block
   is at least a quarter inked (mean intensity >= 64). ``method="bernoulli"`` instead applies the
   book's stochastic protocol :func:`arnb.data.binarize` (one Bernoulli(intensity/255) draw per
   pixel with the fixed seed of the split: train 0, test 1), which adds pixel noise and so
   spreads the data over about 2.5 times as many distinct 4x4 patterns.
4. Flatten in raster order (row by row, left to right): ``x (N, S*S)`` long in {0, 1}.

Splits: the last 5,000 training images are a **validation** set (for smoothing strengths and
early stopping); the first 55,000 are the training pool; the 10,000 test images are only
evaluated.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .mnist import BINARIZE_SEEDS, binarize, load_mnist

VALIDATION_SIZE = 5000
THRESHOLD = 64  # a block at least a quarter inked is a 1


def shrink(images: torch.Tensor, size: int) -> torch.Tensor:
    """Block-average ``images (N, 1, 28, 28)`` long in [0, 255] to ``(N, 1, size, size)`` long."""
    if images.dim() != 4 or images.shape[1] != 1:
        raise ValueError(f"images must have shape (N, 1, H, W), got {tuple(images.shape)}")
    if not 1 <= size <= images.shape[-1]:
        raise ValueError(f"size must be in [1, {images.shape[-1]}], got {size}")
    pooled = F.adaptive_avg_pool2d(images.float(), size)
    return pooled.round().long()


def tiny_binary_mnist(
    split: str = "train", size: int = 4, method: str = "threshold"
) -> torch.Tensor:
    """Binarized ``size x size`` MNIST of one split as ``(N, size*size)`` long in {0, 1}.

    ``split`` is ``"train"`` (60,000 images: use :func:`tiny_mnist_splits` for the
    train/validation division) or ``"test"`` (10,000). Results are cached in memory (they are
    small), so asking again is free; the caller gets its own copy.
    """
    if method not in ("bernoulli", "threshold"):
        raise ValueError(f"method must be 'bernoulli' or 'threshold', got {method!r}")
    return _tiny(split, int(size), method).clone()


@functools.lru_cache(maxsize=16)
def _tiny(split: str, size: int, method: str) -> torch.Tensor:
    images, _ = load_mnist(split)
    small = shrink(images, size)
    if method == "bernoulli":
        binary = binarize(small, BINARIZE_SEEDS[split])
    else:
        binary = (small >= THRESHOLD).long()
    return binary.flatten(1)


@dataclass
class TinyMNIST:
    """The three splits of one tiny binarized MNIST: each ``(N, D)`` long in {0, 1}."""

    size: int
    train: torch.Tensor  # (55000, D): the training pool; take the first n for smaller sets
    val: torch.Tensor  # (5000, D)
    test: torch.Tensor  # (10000, D)

    @property
    def dims(self) -> int:
        return self.size * self.size

    def images(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, D)`` -> ``(N, 1, S, S)`` for plotting."""
        return x.reshape(-1, 1, self.size, self.size)


def tiny_mnist_splits(size: int = 4, method: str = "threshold") -> TinyMNIST:
    """Train pool (first 55,000), validation (last 5,000 training images) and test splits."""
    full = tiny_binary_mnist("train", size, method)
    test = tiny_binary_mnist("test", size, method)
    return TinyMNIST(size, full[:-VALIDATION_SIZE], full[-VALIDATION_SIZE:], test)


def pattern_codes(x: torch.Tensor) -> torch.Tensor:
    """Each binary row ``x (N, D)`` as one integer ``(N,)`` (first dimension = most significant
    bit).

    Valid for D <= 62. Rows that share a prefix get a contiguous range of codes, which
    :class:`arnb.models.joint_table.JointTable` uses for its conditionals.
    """
    if x.dim() != 2:
        raise ValueError(f"x must have shape (N, D), got {tuple(x.shape)}")
    d = x.shape[1]
    if d > 62:
        raise ValueError(f"cannot code {d} binary dimensions in one int64 (at most 62)")
    weights = 2 ** torch.arange(d - 1, -1, -1, dtype=torch.long, device=x.device)
    return (x.long() * weights).sum(-1)


def pattern_stats(train: torch.Tensor, test: torch.Tensor) -> dict[str, float]:
    """How many distinct patterns the training set holds, and how many test images it never saw."""
    seen = torch.unique(pattern_codes(train))
    unseen = ~torch.isin(pattern_codes(test), seen)
    return {
        "dims": train.shape[1],
        "train_images": train.shape[0],
        "distinct_train_patterns": int(seen.numel()),
        "possible_patterns": 2 ** train.shape[1],
        "test_unseen_fraction": float(unseen.float().mean()),
    }
