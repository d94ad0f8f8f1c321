"""Units of log-likelihood: one conversion, used everywhere in the book.

All models report negative log-likelihoods in **nats** (natural log). Bits divide by ln 2;
bits per dimension divide a per-example NLL by the number of dimensions too; perplexity is
exp of the per-token NLL in nats.
"""

from __future__ import annotations

import math

import torch

LN2 = math.log(2.0)


def nats_to_bits(nats: float | torch.Tensor) -> float | torch.Tensor:
    """Convert nats to bits."""
    return nats / LN2


def bits_to_nats(bits: float | torch.Tensor) -> float | torch.Tensor:
    """Convert bits to nats."""
    return bits * LN2


def bits_per_dim(nll_nats: float | torch.Tensor, dims: int) -> float | torch.Tensor:
    """Per-example NLL in nats over ``dims`` discrete dimensions -> bits per dimension.

    For a discrete model of 8-bit pixels this is directly comparable with published figures.
    A continuous density ``p`` on dequantized pixels scaled to [0, 1] is not: with ``y = x / 256``
    each pixel value's bin has width 1/256, so ``-log P(x) = -log p(y) + dims * ln 256`` (exact
    for a density constant on each bin; otherwise the right side, averaged over the
    dequantization noise, is an upper bound). So ``dims * ln 256`` must be added to its NLL
    first. The book's image models are discrete, so they need no such term.
    """
    if dims <= 0:
        raise ValueError(f"dims must be positive, got {dims}")
    return nll_nats / (dims * LN2)


def perplexity(nats_per_token: float | torch.Tensor) -> float | torch.Tensor:
    """exp(mean NLL per token in nats)."""
    if isinstance(nats_per_token, torch.Tensor):
        return torch.exp(nats_per_token)
    return math.exp(nats_per_token)
