"""An autoregressive implicit quantile network (AIQN): a sampler of real vectors with no density.

Ostrovski, Dabney and Munos (2018) replace each conditional density ``p(x_d | x_<d)`` of an
autoregressive model by its conditional *quantile function* ``Q_d(tau | x_<d)``, learned with
the quantile (pinball) loss on random levels ``tau ~ U(0, 1)``. Sampling is inverse-CDF
sampling, one coordinate at a time: ``x_d = Q_d(tau_d | x_<d)`` with a fresh ``tau_d``.

Here every coordinate has its own small network: an MLP of the earlier coordinates (the first
coordinate has none and reads a learned constant instead) whose features meet a cosine
embedding of tau in :class:`~arnb.distributions.ImplicitQuantileHead`, as in
:class:`~arnb.models.mdn.QuantileNet`. There is no ``log_prob`` and no ``nll``: the training
loss is :meth:`AIQN.quantile_loss`, and ``forward`` gives the conditional quantiles.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..distributions import ImplicitQuantileHead, pinball_loss
from ..protocol import ARModule, fixed_length
from ..validation import check_int, check_real
from .mdn import MLP


@dataclass
class AIQNConfig:
    dims: int = 2  # coordinates of x, generated in the order 0, 1, ..., dims - 1
    hidden: int = 64
    depth: int = 2
    n_cos: int = 32  # cosine features of tau
    num_taus: int = 8  # fresh taus per coordinate and example in each loss evaluation


class QuantileConditional(nn.Module):
    """``Q(tau | context)``: ``context (B, n_context)``, ``tau (B, N)`` -> ``(B, N)``.

    With ``n_context = 0`` there is no context: the features are a learned constant, so the
    network is the quantile function of a marginal.
    """

    def __init__(self, n_context: int, hidden: int, depth: int, n_cos: int):
        super().__init__()
        self.n_context = n_context
        if n_context > 0:
            self.body = MLP(n_context, hidden, depth)
        else:
            self.features = nn.Parameter(torch.ones(hidden))
        self.head = ImplicitQuantileHead(hidden, hidden, n_cos)

    def forward(self, context: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        if self.n_context > 0:
            h = self.body(context)
        else:  # the same features for every row
            h = self.features.expand(tau.shape[0], -1)
        return self.head(h, tau)


class AIQN(nn.Module):
    """``x (B, dims)`` real, modelled by ``Q_d(tau | x_<d)`` for ``d = 0 .. dims - 1``.

    It only samples (``sample``) and gives quantiles (``forward``); it has no density.
    """

    def __init__(self, config: AIQNConfig | None = None, **kwargs):
        super().__init__()
        self.config = config = config or AIQNConfig(**kwargs)
        check_int(config.dims, "dims", low=1)
        self.conditionals = nn.ModuleList(
            QuantileConditional(d, config.hidden, config.depth, config.n_cos)
            for d in range(config.dims)
        )

    # the device and dtype of the parameters, and the prompt buffer, as every model of the book
    device = ARModule.device
    dtype = ARModule.dtype
    start_buffer = ARModule.start_buffer

    def forward(self, x: torch.Tensor, tau: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced quantiles: ``Q_d(tau[:, d] | x[:, :d])`` for every d at once.

        ``x (B, dims)``; ``tau (B, dims, N)`` levels per coordinate, or ``(B, dims)`` for one
        level each, or None for the medians. Returns the shape of ``tau`` (``(B, dims)`` for
        None). Row d never depends on ``x[:, d:]``.
        """
        check_real(x, "x", (None, self.config.dims))
        x = x.to(self.dtype)
        if tau is None:
            tau = torch.full_like(x, 0.5)
        squeeze = tau.dim() == 2
        tau = tau.unsqueeze(-1) if squeeze else tau
        check_real(tau, "tau", (x.shape[0], self.config.dims, None))
        tau = tau.to(x)
        out = torch.stack([q(x[:, :d], tau[:, d]) for d, q in enumerate(self.conditionals)], dim=1)
        return out.squeeze(-1) if squeeze else out

    def quantile_loss(
        self, x: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The training loss: the pinball loss of every coordinate's quantile at ``num_taus``
        fresh levels ``tau ~ U(0, 1)``, averaged over levels, coordinates and examples."""
        check_real(x, "x", (None, self.config.dims))
        tau = torch.rand(x.shape[0], self.config.dims, self.config.num_taus, generator=generator)
        tau = tau.to(x.device, self.dtype).clamp(1e-4, 1 - 1e-4)  # the open interval
        pred = self(x, tau)
        target = x.to(pred.dtype).unsqueeze(-1).expand_as(pred)
        return pinball_loss(pred, target, tau).mean()

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        prompt: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        length: int | None = None,
    ) -> torch.Tensor:
        """``(n, dims)`` samples: coordinate d is ``Q_d(tau_d | x_<d)`` with ``tau_d ~ U(0, 1)``.

        ``prompt`` fixes the first C coordinates of one sample ``(C,)`` or of each ``(n, C)``;
        only the rest are drawn. ``length`` can only be None or ``dims``.
        """
        dims = fixed_length(length, self.config.dims)
        if prompt is not None:
            prompt = torch.as_tensor(prompt)
            check_real(prompt, "prompt")
        x, c = self.start_buffer(n, prompt, (dims,), dtype=self.dtype)
        for d in range(c, dims):
            tau = torch.rand(x.shape[0], 1, generator=generator).to(x)
            x[:, d] = self.conditionals[d](x[:, :d], tau).squeeze(-1)
        return x
