"""Networks for real-valued conditionals: the mixture density network and its rivals.

- :class:`ConditionalDensityNet`: an MLP from the context ``x (B, in_features)`` to a density
  over one real ``y``. With ``head="mixture"`` it is Bishop's **mixture density network** (MDN),
  with ``head="bins"`` a categorical over bins of y's range.
- :class:`MSERegressor`: the same MLP trained with mean-squared error, the baseline that fails
  on multimodal targets (it predicts the conditional *mean*, which may lie between branches).
- :class:`QuantileNet`: the same MLP feeding an implicit-quantile head (no likelihood).
- :class:`AutoregressiveMDN2D`: a density over two reals, ``p(x_a) p(x_b | x_a)``, each factor a
  mixture of Gaussians: the autoregressive idea of the whole book, on continuous data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..distributions import (
    BinnedDensityHead,
    GaussianMixture,
    ImplicitQuantileHead,
    MixtureDensityHead,
    check_real,
    full_precision,
    pinball_loss,
    quantile_huber_loss,
)
from ..protocol import ARModule


class MLP(nn.Sequential):
    """``depth`` tanh layers of width ``hidden``: smooth features suit smooth conditional densities.

    It always runs in float32, even under autocast: these networks are tiny, and bfloat16 would
    round the features (and so the predicted means) to about three significant digits.
    """

    def __init__(self, in_features: int, hidden: int, depth: int):
        if depth < 1 or hidden < 1:
            raise ValueError(f"need depth >= 1 and hidden >= 1, got depth={depth}, hidden={hidden}")
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Linear(in_features if i == 0 else hidden, hidden), nn.Tanh()]
        super().__init__(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with full_precision(x):
            return super().forward(x.float())


@dataclass
class MDNConfig:
    in_features: int = 1
    hidden: int = 64
    depth: int = 2
    head: str = "mixture"  # "mixture" (MDN) or "bins" (categorical over bins)
    num_components: int = 5  # mixture head
    min_scale: float = 1e-3  # mixture head: sigma >= min_scale, so the NLL cannot run to -inf
    num_bins: int = 64  # bins head
    low: float = -10.5  # bins head: the range of y it can represent
    high: float = 10.5


class ConditionalDensityNet(nn.Module):
    """``p(y | x)`` for ``x (B, in_features)`` and ``y (B,)``: an MLP plus a density head."""

    def __init__(self, config: MDNConfig):
        super().__init__()
        self.config = config
        self.body = MLP(config.in_features, config.hidden, config.depth)
        if config.head == "mixture":
            self.head = MixtureDensityHead(config.hidden, config.num_components, config.min_scale)
        elif config.head == "bins":
            self.head = BinnedDensityHead(config.hidden, config.num_bins, config.low, config.high)
        else:
            raise ValueError(f"head must be 'mixture' or 'bins', got {config.head!r}")

    def _check_x(self, x: torch.Tensor) -> None:
        check_real(x, "x", (None, self.config.in_features))

    def forward(self, x: torch.Tensor):
        """``x (B, in_features)`` -> the conditional distribution (a ``GaussianMixture`` or ``BinnedDensity``)."""
        self._check_x(x)
        return self.head(self.body(x))

    def log_prob(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``log p(y | x)``: ``y (B,)``, ``x (B, in_features)`` -> ``(B,)`` in nats."""
        self._check_x(x)
        check_real(y, "y", (x.shape[0],))
        return self.head(self.body(x)).log_prob(y)

    def nll(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Mean NLL in nats: the training loss."""
        return -self.log_prob(y, x).mean()

    @torch.no_grad()
    def sample(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One ``y`` per row of ``x``: ``(B,)``."""
        return self(x).sample(generator)


class MDN(ConditionalDensityNet):
    """A mixture density network: :class:`ConditionalDensityNet` with a mixture head."""

    def __init__(self, config: MDNConfig | None = None, **kwargs):
        config = config or MDNConfig(**kwargs)
        if config.head != "mixture":
            raise ValueError("an MDN has a mixture head; use ConditionalDensityNet for bins")
        super().__init__(config)

    def forward(self, x: torch.Tensor) -> GaussianMixture:
        return super().forward(x)


class MSERegressor(nn.Module):
    """``x (B, in_features) -> (B,)`` point prediction, trained with mean-squared error."""

    def __init__(self, in_features: int = 1, hidden: int = 64, depth: int = 2):
        super().__init__()
        self.in_features = in_features
        self.body = MLP(in_features, hidden, depth)
        self.out = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_real(x, "x", (None, self.in_features))
        with full_precision(x):
            return self.out(self.body(x)).squeeze(-1)

    def loss(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        check_real(y, "y", (x.shape[0],))
        return ((self(x) - y) ** 2).mean()

    @torch.no_grad()
    def gaussian_log_prob(self, y: torch.Tensor, x: torch.Tensor, sigma: float) -> torch.Tensor:
        """The regressor read as a density: ``N(y | f(x), sigma^2)``; its best sigma is the RMS residual."""
        from ..distributions import normal_log_prob

        return normal_log_prob(y, self(x), torch.tensor(float(sigma)))


class QuantileNet(nn.Module):
    """``Q(tau | x)``: MLP features of ``x (B, in_features)`` and ``tau (B, N)`` -> quantiles ``(B, N)``."""

    def __init__(
        self,
        in_features: int = 1,
        hidden: int = 64,
        depth: int = 2,
        n_cos: int = 32,
        loss: str = "pinball",
        kappa: float = 1.0,
    ):
        super().__init__()
        if loss not in ("pinball", "huber"):
            raise ValueError(f"loss must be 'pinball' or 'huber', got {loss!r}")
        self.in_features, self.loss_kind, self.kappa = in_features, loss, kappa
        self.body = MLP(in_features, hidden, depth)
        self.head = ImplicitQuantileHead(hidden, hidden, n_cos)

    def forward(self, x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        check_real(x, "x", (None, self.in_features))
        check_real(tau, "tau", (x.shape[0], None))
        return self.head(self.body(x), tau)

    def loss(
        self,
        y: torch.Tensor,
        x: torch.Tensor,
        num_taus: int = 8,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Mean quantile loss over ``num_taus`` fresh ``tau ~ U(0, 1)`` per example."""
        check_real(y, "y", (x.shape[0],))
        tau = torch.rand(x.shape[0], num_taus, generator=generator).to(x.device)
        tau = tau.clamp(1e-4, 1 - 1e-4)  # the loss is defined on the open interval
        pred = self(x, tau)
        target = y.unsqueeze(1)
        if self.loss_kind == "pinball":
            return pinball_loss(pred, target.expand_as(pred), tau).mean()
        return quantile_huber_loss(pred, target.expand_as(pred), tau, self.kappa).mean()

    @torch.no_grad()
    def sample(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One ``y`` per row of ``x`` by evaluating the quantile function at a uniform tau."""
        check_real(x, "x", (None, self.in_features))
        return self.head.sample(self.body(x), generator)


class AutoregressiveMDN2D(ARModule):
    """``p(x) = p(x_a) p(x_b | x_a)`` over ``x (B, 2)`` real, with ``(a, b) = order``.

    The first factor is a context-free mixture (its parameters are learned directly); the
    second is an MDN of ``x_a``. With ``independent=True`` the second factor ignores ``x_a`` too:
    the product of two marginals, the baseline that autoregression must beat.
    """

    def __init__(
        self,
        num_components: int = 8,
        hidden: int = 64,
        depth: int = 2,
        order: tuple[int, int] = (0, 1),
        independent: bool = False,
        min_scale: float = 1e-3,
    ):
        super().__init__()
        if sorted(order) != [0, 1]:
            raise ValueError(f"order must be (0, 1) or (1, 0), got {order}")
        self.order, self.independent = tuple(order), independent
        self.num_components, self.min_scale = num_components, min_scale
        k = num_components
        # first factor: raw (logit, mean, scale) parameters, spread out so components start apart
        self.first = nn.Parameter(
            torch.cat([torch.zeros(k), torch.linspace(-1.5, 1.5, k), torch.zeros(k)])
        )
        self.second = MDN(
            MDNConfig(
                in_features=1, hidden=hidden, depth=depth, num_components=k, min_scale=min_scale
            )
        )

    def _first_mixture(self, batch: int) -> GaussianMixture:
        logits, means, raw = self.first.expand(batch, -1).chunk(3, dim=-1)
        return GaussianMixture(logits, means, nn.functional.softplus(raw) + self.min_scale)

    def conditionals(self, x: torch.Tensor) -> tuple[GaussianMixture, GaussianMixture]:
        """The two factors for ``x (B, 2)``, in model order: ``p(x_a)``, ``p(x_b | x_a)``."""
        a = self.order[0]
        context = x[:, a : a + 1]
        if self.independent:
            context = torch.zeros_like(context)  # the second factor sees nothing
        return self._first_mixture(x.shape[0]), self.second(context)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, 2)`` -> ``(B, 2, K, 3)``: (logit, mean, scale) of the conditional of each coordinate.

        Row i belongs to coordinate i (not to position i of the order), as the causality probes expect.
        """
        check_real(x, "x", (None, 2))
        first, second = self.conditionals(x)
        params = [None, None]
        params[self.order[0]], params[self.order[1]] = first.params(), second.params()
        return torch.stack(params, dim=1)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, 2)`` -> ``(B,)`` log density in nats: ``log p(x_a) + log p(x_b | x_a)``."""
        check_real(x, "x", (None, 2))
        a, b = self.order
        first, second = self.conditionals(x)
        return first.log_prob(x[:, a]) + second.log_prob(x[:, b])

    @torch.no_grad()
    def sample(
        self, n: int, prompt: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``(n, 2)`` samples, one coordinate at a time in model order.

        ``prompt`` (a number, ``(1,)``, ``(n,)`` or ``(n, 1)``) fixes the *first coordinate in model
        order*, ``x_a``; the second is then drawn from ``p(x_b | x_a)``.
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        a, b = self.order
        x = torch.zeros(n, 2, device=self.device)
        if prompt is not None:
            prompt = torch.as_tensor(prompt, dtype=torch.float32).reshape(-1)
            if prompt.numel() not in (1, n):
                raise ValueError(
                    f"prompt must hold 1 or n={n} values of x_{a}, got {prompt.numel()}"
                )
            check_real(prompt, "prompt")
            x[:, a] = prompt.to(self.device).expand(n)
        else:
            x[:, a] = self._first_mixture(n).sample(generator)
        _, second = self.conditionals(x)
        x[:, b] = second.sample(generator)
        return x
