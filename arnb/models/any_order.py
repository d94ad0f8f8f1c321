"""An any-order autoregressive model of binary vectors: one network for every conditional.

A causal model such as MADE or PixelCNN answers ``p(x_i | x_<i)`` for one fixed order only.
The network here instead reads which pixels are known:

    logits = net([x * m, m])        m in {0, 1}^D: 1 where x_d is observed

and its output ``d`` is the logit of ``p(x_d = 1 | x_o)`` for every unobserved ``d`` (the mask
channel tells a known 0 from an unknown pixel). Any order ``sigma`` then defines a normalised
joint by the chain rule,

    log p(x | sigma) = sum_t log p(x_{sigma(t)} | x_{sigma(<t)})     (D passes, one per step),

and so does any observed set followed by the missing pixels in any order: imputation is
``|m|`` passes, exact for this model whatever is observed.

Two objectives train the same network (``AnyOrderConfig.objective``):

- ``"any_order"`` (Uria et al. 2014, Hoogeboom et al. 2022, ARDM): draw the number of observed
  pixels ``t`` uniformly in ``0..D-1`` and a random set of that size; the loss
  ``D / (D - t) * sum over unobserved d of -log p(x_d | x_o)`` is an unbiased estimate of
  ``E_sigma[-log p(x | sigma)]``, an upper bound on the negative log-likelihood of the order
  mixture. Its minimiser gives the same conditionals whatever the order.
- ``"masked"`` (BERT-style): mask each pixel with a probability drawn uniformly per image and
  score only the masked pixels, each on its own. Nothing makes the predictions of several
  masked pixels a joint distribution; used one pixel at a time they still form a chain rule.

The model follows :mod:`arnb.protocol` with a default order (raster unless given): ``forward``
gives the D conditionals of that order (D passes), ``log_prob``/``sample`` use it, and every
method takes another ``order`` where it makes sense.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..sampling import sample_bernoulli
from .fvsbn import BinaryAR, check_order

OBJECTIVES = ("any_order", "masked")


@dataclass
class AnyOrderConfig:
    dims: int  # D, number of binary dimensions
    hidden: tuple[int, ...] = (256, 256)  # sizes of the hidden layers of the MLP
    objective: str = "any_order"  # "any_order" (ARDM / order-agnostic NADE) or "masked" (BERT)
    order: list[int] | None = field(default=None)  # the default order; None: 0..D-1


class AnyOrderNet(BinaryAR):
    """MLP ``[x * m, m] (B, 2D) -> (B, D)`` logits of ``p(x_d = 1 | x_o)`` for ``x (B, D)``."""

    def __init__(self, config: AnyOrderConfig):
        if config.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {config.objective!r}")
        super().__init__(config.dims, config.order)
        self.config = config
        sizes = (2 * config.dims, *config.hidden)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.out = nn.Linear(sizes[-1], config.dims)

    # ------------------------------------------------------------------ the network itself

    def conditionals(self, x: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """One pass: logits ``(B, D)`` of ``p(x_d = 1 | x_o)``, where ``observed (B, D)`` or
        ``(D,)`` is 1 (or True) on the known pixels. Unknown pixels' values are never read."""
        m = torch.as_tensor(observed, device=x.device).to(self.out.weight.dtype)
        m = m.expand(x.shape)
        h = torch.cat([x.to(m.dtype) * m, m], -1)
        for layer in self.hidden:
            h = F.relu(layer(h))
        return self.out(h)

    def set_order(self, order: torch.Tensor | list[int]) -> None:
        """Change the default order (nothing else changes: every order uses the same network)."""
        self._set_order_buffers(order)

    def _order(self, order) -> torch.Tensor:
        return self.order if order is None else check_order(order, self.dims).to(self.order.device)

    def conditional_logit(self, x: torch.Tensor, step: int, *, order=None) -> torch.Tensor:
        """Logit ``(B,)`` of ``p(x_{order[step]} = 1 | x_{order[:step]})``: one pass."""
        order = self._order(order)
        observed = torch.zeros(self.dims, device=x.device)
        observed[order[:step].to(x.device)] = 1.0
        return self.conditionals(x, observed)[:, int(order[step])]

    def forward(self, x: torch.Tensor, *, order=None) -> torch.Tensor:
        """Logits ``(B, D)`` of ``p(x_d = 1 | x before d in order)``, natural layout: D passes."""
        order = self._order(order)
        out = None
        for k in range(self.dims):
            logit = self.conditional_logit(x, k, order=order)
            if out is None:
                out = logit.new_zeros(x.shape[0], self.dims)
            out[:, int(order[k])] = logit
        return out if out is not None else x.new_zeros(x.shape, dtype=self.out.weight.dtype)

    def log_prob_terms(self, x: torch.Tensor, *, order=None) -> torch.Tensor:
        """``log p(x_d | x before d in order)``: ``x (B, D) -> (B, D)`` nats (D passes)."""
        x = self._check_input(x)
        logits = self(x, order=order)
        return -F.binary_cross_entropy_with_logits(logits, x.to(logits.dtype), reduction="none")

    def log_prob(self, x: torch.Tensor, *, order=None) -> torch.Tensor:
        """Exact ``log p(x | order)`` (the default order if None): ``(B, D) -> (B,)`` nats."""
        return self.log_prob_terms(x, order=order).sum(-1)

    # ------------------------------------------------------------------ training objectives

    def _random_observed(self, n: int, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
        """For ``n`` images: a number ``t`` of observed pixels uniform in ``0..D-1`` and a random
        set of that size, as ``(n, D)`` 0/1 (a random order's first t entries)."""
        d, device = self.dims, self._draw_device(generator)
        t = torch.randint(0, d, (n,), generator=generator, device=device)
        ranks = torch.rand(n, d, generator=generator, device=device).argsort(-1)  # an order each
        observed = (ranks < t[:, None]).float()
        return observed.to(self.device), t.to(self.device)

    def _random_unmasked(self, n: int, generator=None) -> torch.Tensor:
        """For ``n`` images, ``(n, D)`` 0/1 with 0 where a pixel is masked: each image masks
        each pixel with its own probability ``r ~ U(0, 1)``, and at least one pixel."""
        d, device = self.dims, self._draw_device(generator)
        r = torch.rand(n, 1, generator=generator, device=device)
        hide = torch.rand(n, d, generator=generator, device=device) < r
        one = torch.randint(0, d, (n,), generator=generator, device=device)
        hide[torch.arange(n, device=device), one] = True
        return (~hide).float().to(self.device)

    def _draw_device(self, generator) -> torch.device:
        """Where the random masks are drawn: the generator's device, else the model's. Training
        passes no generator, and on a GPU a mask drawn (and sorted) on the CPU every step would
        cost more than the step itself; on the CPU both give the same default stream."""
        return generator.device if generator is not None else self.device

    def any_order_bound(self, x: torch.Tensor, generator=None) -> torch.Tensor:
        """One-sample estimate ``(B,)`` nats of ``E_sigma[-log p(x | sigma)] >= -log p(x)``."""
        x = self._check_input(x)
        observed, t = self._random_observed(x.shape[0], generator)
        logits = self.conditionals(x, observed)
        nll = F.binary_cross_entropy_with_logits(logits, x.to(logits.dtype), reduction="none")
        missing_sum = (nll * (1 - observed)).sum(-1)
        return self.dims / (self.dims - t).to(nll.dtype) * missing_sum

    def masked_nll(self, x: torch.Tensor, generator=None) -> torch.Tensor:
        """BERT-style loss (per masked pixel): each image masks each pixel with its own
        probability r ~ U(0, 1) (at least one pixel), each masked pixel is predicted alone."""
        x = self._check_input(x)
        observed = self._random_unmasked(x.shape[0], generator)
        logits = self.conditionals(x, observed)
        nll = F.binary_cross_entropy_with_logits(logits, x.to(logits.dtype), reduction="none")
        return (nll * (1 - observed)).sum() / (1 - observed).sum()

    def train_nll(self, x: torch.Tensor, generator=None) -> torch.Tensor:
        """The training loss of ``config.objective`` in nats per scored pixel (a scalar)."""
        if self.config.objective == "masked":
            return self.masked_nll(x, generator)
        return self.any_order_bound(x, generator).mean() / self.dims

    # ------------------------------------------------------------------ imputation

    @staticmethod
    def fill_order(observed: torch.Tensor, order=None) -> torch.Tensor:
        """The missing dimensions of one ``observed (D,)`` mask in ``order`` (raster if None)."""
        observed = torch.as_tensor(observed).bool().cpu()
        order = torch.arange(len(observed)) if order is None else torch.as_tensor(order).cpu()
        return order[~observed[order]]

    def log_prob_missing(
        self, x: torch.Tensor, observed: torch.Tensor, order=None, steps: int | None = None
    ) -> torch.Tensor:
        """``log q(x_m | x_o)`` ``(B,)`` of the imputation :meth:`impute` performs, for full
        ``x (B, D)`` and one ``observed (D,)`` mask: the missing pixels in ``order`` (raster by
        default), cut into ``steps`` groups (``None``: one pixel per group, the exact chain
        rule), each group drawn independently given what is known. ``steps`` passes."""
        x = self._check_input(x)
        missing = self.fill_order(observed, order)
        groups = _groups(missing, steps)
        known = torch.as_tensor(observed).float().to(self.device).clone()
        total = torch.zeros(x.shape[0], dtype=self.out.weight.dtype, device=x.device)
        for group in groups:
            logits = self.conditionals(x, known)[:, group]
            total = total - F.binary_cross_entropy_with_logits(
                logits, x[:, group].to(logits.dtype), reduction="none"
            ).sum(-1)
            known[group] = 1.0
        return total

    @torch.no_grad()
    def impute(
        self,
        x: torch.Tensor,
        observed: torch.Tensor,
        *,
        order=None,
        steps: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Fill the missing pixels of ``x (B, D)`` (``observed (D,)`` 1 on known pixels):
        the observed ones are copied unchanged, the missing ones drawn in ``order`` (raster by
        default), ``steps`` groups of pixels, one network pass per group (None: one per pixel)."""
        x = self._check_input(x).clone()
        missing = self.fill_order(observed, order)
        known = torch.as_tensor(observed).float().to(self.device).clone()
        x[:, missing.to(x.device)] = 0  # the unknown values are never read; make that visible
        for group in _groups(missing, steps):
            logits = self.conditionals(x, known)[:, group]
            x[:, group.to(x.device)] = sample_bernoulli(logits, generator).to(x.device)
            known[group] = 1.0
        return x

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        prompt: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        length: int | None = None,
        steps: int | None = None,
    ) -> torch.Tensor:
        """``n`` samples ``(n, D)`` in the default order; ``prompt (C,)`` or ``(n, C)`` holds the
        first C values in that order. ``steps`` passes draw the rest in groups (None: one pixel
        per pass, exact ancestral sampling; fewer passes is ARDM's parallel generation)."""
        if steps is None:
            return super().sample(n, prompt=prompt, generator=generator, length=length)
        if length is not None and length != self.dims:
            raise ValueError(f"this model draws samples of length {self.dims} only")
        in_order, c = self.start_buffer(n, prompt, (self.dims,), num_classes=2)
        x = torch.zeros_like(in_order)
        x[:, self.order] = in_order
        observed = torch.zeros(self.dims)
        observed[self.order[:c].cpu()] = 1.0
        return self.impute(x, observed, order=self.order, steps=steps, generator=generator)


def _groups(missing: torch.Tensor, steps: int | None) -> list[torch.Tensor]:
    """Split ``missing`` (in its order) into ``steps`` consecutive groups of near-equal size."""
    if missing.numel() == 0:
        return []
    if steps is None or steps >= missing.numel():
        return [missing[i : i + 1] for i in range(missing.numel())]
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    bounds = [round(i * missing.numel() / steps) for i in range(steps + 1)]
    return [missing[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def ensemble_log_prob(model: AnyOrderNet, x: torch.Tensor, orders: list) -> torch.Tensor:
    """``log (1/K) sum_k p(x | order_k)`` ``(B,)``: a mixture of K orders, each a normalised
    model, is normalised too. Average probabilities (logsumexp), never logits."""
    lps = torch.stack([model.log_prob(x, order=o) for o in orders])  # (K, B)
    return torch.logsumexp(lps, 0) - math.log(len(orders))
