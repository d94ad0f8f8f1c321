"""Drawing from categorical conditionals, and the generic ancestral sampling loop.

Every draw goes through :func:`sample_categorical`, which turns **one uniform number per row**
into a category by inverting the cumulative distribution. Two samplers that compute the same
conditionals in the same order (a naive loop and a cached one, say) therefore produce exactly
the same samples from the same generator.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .validation import check_int, validation_enabled


def check_sampling(
    temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
) -> tuple[float, int | None, float | None]:
    """The sampling knobs, checked: ``temperature`` finite and > 0, ``top_k`` an int >= 1,
    ``top_p`` in (0, 1]. Plain Python, no tensor is read, so a sampler checks them once per
    call (also when it then draws greedily) and the loop pays nothing."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"temperature must be a number, got {temperature!r}")
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be > 0 and finite, got {temperature}")
    if top_k is not None:
        top_k = check_int(top_k, "top_k", low=1)
    if top_p is not None:
        if isinstance(top_p, bool) or not isinstance(top_p, (int, float)):
            raise TypeError(f"top_p must be a number, got {top_p!r}")
        if not 0.0 < top_p <= 1.0:  # also refuses NaN
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    return float(temperature), top_k, None if top_p is None else float(top_p)


def filter_logits(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> torch.Tensor:
    """Temperature, top-k and nucleus (top-p) filtering of ``logits (..., K)``; returns logits.

    - temperature divides the logits (< 1 sharpens, > 1 flattens); it must be > 0.
    - top_k keeps the k most probable categories.
    - top_p keeps the smallest set of most probable categories whose mass reaches p.
    Removed categories get ``-inf``; at least one category of every row survives.

    A row without a finite maximum (all ``-inf``: no category is possible; or NaN or
    ``+inf``) has no distribution to filter. With validation on (:mod:`arnb.validation`) it is
    refused with a ValueError rather than turned into NaN probabilities downstream; this costs
    one device sync, which samplers avoid by checking their inputs once and running their loop
    with validation off. Results are float32, or float64 for float64 logits.
    """
    temperature, top_k, top_p = check_sampling(temperature, top_k, top_p)
    if validation_enabled() and logits.numel():
        bad = ~torch.isfinite(logits.amax(dim=-1))  # NaN anywhere in a row makes its max NaN
        if bool(bad.any()):
            row = tuple(int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"logits row {row} has no finite maximum (all -inf, NaN or +inf): "
                "no distribution to sample from"
            )
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32)) / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        # mass strictly before each category; keep while it is below p (so the first always stays)
        before = torch.cumsum(probs, dim=-1) - probs
        drop_sorted = before >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_categorical(
    logits: torch.Tensor,
    generator: torch.Generator | None = None,
    uniform: torch.Tensor | None = None,
) -> torch.Tensor:
    """Draw one category per row of ``logits (B, K)`` -> ``(B,)`` long, by inverse CDF.

    Uses exactly one uniform number per row (``uniform (B,)`` if given, else drawn on the CPU
    from ``generator``), so the result depends only on the probabilities and that number.
    """
    probs = torch.softmax(logits.float(), dim=-1)
    if uniform is None:
        uniform = torch.rand(probs.shape[0], generator=generator)
    uniform = uniform.to(probs.device, probs.dtype).unsqueeze(-1)
    cdf = torch.cumsum(probs, dim=-1)
    idx = torch.searchsorted(cdf, uniform * cdf[:, -1:], right=True).squeeze(-1)
    return idx.clamp_(max=probs.shape[-1] - 1)


def sample_bernoulli(
    logits: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw ``x ~ Bernoulli(sigmoid(logits))`` for ``logits (B,)`` with one uniform per row."""
    u = torch.rand(logits.shape, generator=generator).to(logits.device)
    return (u < torch.sigmoid(logits.float())).long()


def ancestral_sample(
    next_logits: Callable[[torch.Tensor, int], torch.Tensor],
    x: torch.Tensor,
    start: int = 0,
    *,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Fill ``x[:, start:]`` of the buffer ``x (n, T)`` long one position at a time; return ``x``.

    ``x`` and ``start`` come from :meth:`arnb.protocol.ARModule.start_buffer` (the prompt
    already written into ``x[:, :start]``, kept unchanged). ``next_logits(x, i)`` gets the
    partially filled buffer (positions ``>= i`` hold zeros and must not be used) and returns the
    logits ``(n, K)`` of ``p(x_i | x_<i)``.
    """
    steps = range(start, x.shape[1])
    if progress:
        from .train import progress as bar  # a plain line when done: readable without JS

        steps = bar(steps, desc="sampling", unit="position")
    for i in steps:
        x[:, i] = sample_categorical(next_logits(x, i), generator)
    return x
