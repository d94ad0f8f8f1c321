"""Exact answers by enumeration: every probability of a tiny binary model, marginals, conditionals.

An autoregressive model gives ``log p(x)`` of a *complete* x in one pass, but any question about
a part of x that does not come first in its order needs a sum over the other parts:

    p(x_o) = sum over x_m of p(x_o, x_m)        p(x_m | x_o) = p(x_o, x_m) / p(x_o)

Here ``o`` is a set of observed dimensions and ``m`` the missing rest. The functions below do
those sums exactly, by listing all ``2^|m|`` completions, and say how many model evaluations
that took. They are the ground truth for the chapter's tests and for imputation in chapter 7
(:mod:`arnb.chapters.ch07_any_order`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .testing import all_configurations

LogProb = Callable[[torch.Tensor], torch.Tensor]

MAX_ENUMERATE = 2**22


@torch.no_grad()
def enumerate_log_probs(
    log_prob: LogProb, dims: int, batch_size: int = 8192, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """All ``2^dims`` binary configurations ``(2^D, D)`` and their ``log p`` ``(2^D,)`` float64.

    Configurations are in lexicographic order (dimension 0 is the most significant bit).
    """
    if 2**dims > MAX_ENUMERATE:
        raise ValueError(f"2**{dims} configurations is too many to enumerate (limit 2**22)")
    configs = all_configurations(dims, 2)
    logp = torch.cat(
        [
            log_prob(configs[i : i + batch_size].to(device)).double().cpu()
            for i in range(0, len(configs), batch_size)
        ]
    )
    return configs, logp


def _observed(dims: int, observed: torch.Tensor | list[int], values: torch.Tensor | list[int]):
    observed = torch.as_tensor(observed, dtype=torch.long).flatten()
    values = torch.as_tensor(values, dtype=torch.long).flatten()
    if observed.numel() != values.numel():
        raise ValueError(f"{observed.numel()} observed dimensions but {values.numel()} values")
    if observed.numel() and (observed.min() < 0 or observed.max() >= dims):
        raise ValueError(
            f"observed dimensions must lie in [0, {dims - 1}], got {observed.tolist()}"
        )
    if observed.unique().numel() != observed.numel():
        raise ValueError(f"observed dimensions repeat: {observed.tolist()}")
    if values.numel() and (values.min() < 0 or values.max() > 1):
        raise ValueError(f"observed values must be 0 or 1, got {values.tolist()}")
    keep = torch.ones(dims, dtype=torch.bool)
    keep[observed] = False
    missing = torch.arange(dims)[keep]
    return observed, values, missing


def completions(
    dims: int, observed: torch.Tensor | list[int], values: torch.Tensor | list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every full ``x (2^|m|, D)`` that agrees with ``x[observed] = values``, and the missing dims.

    Row r sets the missing dimensions ``m`` (in increasing order) to the binary digits of r.
    """
    observed, values, missing = _observed(dims, observed, values)
    if 2 ** missing.numel() > MAX_ENUMERATE:
        raise ValueError(f"2**{missing.numel()} completions is too many to enumerate (limit 2**22)")
    fill = (
        all_configurations(missing.numel(), 2)
        if missing.numel()
        else torch.zeros(1, 0, dtype=torch.long)
    )
    x = torch.zeros(fill.shape[0], dims, dtype=torch.long)
    x[:, observed] = values
    x[:, missing] = fill
    return x, missing


@torch.no_grad()
def conditional_by_completion(
    log_prob: LogProb,
    dims: int,
    observed: torch.Tensor | list[int],
    values: torch.Tensor | list[int],
    batch_size: int = 8192,
    device: torch.device | str = "cpu",
) -> dict:
    """Exact ``p(x_m | x_o)`` for any observed set, by summing the model over all completions.

    Returns a dict with
    - ``completions (2^|m|, D)``: every full x that agrees with the observation;
    - ``log_joint (2^|m|,)``: ``log p(x_o, x_m)`` of each (float64);
    - ``log_marginal``: ``log p(x_o) = logsumexp(log_joint)``;
    - ``log_conditional (2^|m|,)``: ``log p(x_m | x_o)``, which sums (in probability) to one;
    - ``marginals (D,)``: ``p(x_d = 1 | x_o)`` for every d (0/1 for the observed ones);
    - ``missing``: the missing dimensions; ``evaluations``: how many full x were scored.
    """
    x, missing = completions(dims, observed, values)
    log_joint = torch.cat(
        [
            log_prob(x[i : i + batch_size].to(device)).double().cpu()
            for i in range(0, len(x), batch_size)
        ]
    )
    log_marginal = torch.logsumexp(log_joint, 0)
    log_cond = log_joint - log_marginal
    marginals = (log_cond.exp().unsqueeze(-1) * x.double()).sum(0)
    return {
        "completions": x,
        "log_joint": log_joint,
        "log_marginal": float(log_marginal),
        "log_conditional": log_cond,
        "marginals": marginals,
        "missing": missing,
        "evaluations": len(x),
    }


def marginal_log_prob(
    log_prob: LogProb,
    dims: int,
    observed: torch.Tensor | list[int],
    values: torch.Tensor | list[int],
) -> float:
    """``log p(x_o = values)``, summing over all completions of the other dimensions."""
    return conditional_by_completion(log_prob, dims, observed, values)["log_marginal"]


@torch.no_grad()
def prefix_marginal_log_prob(model, x: torch.Tensor, steps: int) -> torch.Tensor:
    """``log p(x_{order[:steps]})`` of a model of the chapter, from its conditionals alone.

    For a prefix *in the model's order* no sum is needed: it is the sum of the first ``steps``
    terms of the chain rule. ``x (B, D)`` (the later dimensions are ignored) -> ``(B,)``.
    """
    terms = model.log_prob_terms(x)  # (B, D) natural layout
    return terms[:, model.order[:steps]].sum(-1)


def total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    """``0.5 * sum |p - q|`` between two probability vectors of the same support."""
    if p.shape != q.shape:
        raise ValueError(
            f"p and q must have the same shape, got {tuple(p.shape)} and {tuple(q.shape)}"
        )
    return float(0.5 * (p.double() - q.double()).abs().sum())


def empirical_distribution(samples: torch.Tensor, dims: int) -> torch.Tensor:
    """Frequencies of ``samples (N, D)`` binary over all ``2^D`` configurations (lexicographic)."""
    weights = 2 ** torch.arange(dims - 1, -1, -1, dtype=torch.long)
    codes = (samples.long().cpu() * weights).sum(-1)
    return torch.bincount(codes, minlength=2**dims).double() / len(samples)
