"""Drawing from categorical conditionals, and the generic ancestral sampling loop.

Every draw goes through :func:`sample_categorical`, which turns **one uniform number per row**
into a category by inverting the cumulative distribution. Two samplers that compute the same
conditionals in the same order (a naive loop and a cached one, say) therefore produce exactly
the same samples from the same generator.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


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
    Removed categories get ``-inf``; at least one category always survives.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    logits = logits.float() / temperature
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
    n: int,
    length: int,
    prompt: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> torch.Tensor:
    """Sample ``(n, length)`` long sequences one position at a time.

    ``next_logits(x, i)`` gets the partially filled ``x (n, length)`` (positions ``>= i`` hold
    zeros and must not be used) and returns the logits ``(n, K)`` of ``p(x_i | x_<i)``.
    ``prompt (n, C)`` or ``(C,)`` fixes the first C positions; they are returned unchanged.
    """
    if n < 1 or length < 1:
        raise ValueError(f"n and length must be >= 1, got n={n}, length={length}")
    x = torch.zeros(n, length, dtype=torch.long, device=device)
    start = 0
    if prompt is not None:
        prompt = torch.as_tensor(prompt, dtype=torch.long)
        if prompt.dim() == 1:
            prompt = prompt.expand(n, -1)
        if prompt.shape[0] != n or prompt.shape[1] > length:
            raise ValueError(
                f"prompt must have shape (n={n}, C<={length}), got {tuple(prompt.shape)}"
            )
        start = prompt.shape[1]
        x[:, :start] = prompt.to(device)
    steps = range(start, length)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="sampling", leave=False)
    for i in steps:
        x[:, i] = sample_categorical(next_logits(x, i), generator)
    return x
