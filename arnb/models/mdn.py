"""Networks for real-valued conditionals: the mixture density network and its rivals.

- :class:`ConditionalDensityNet`: an MLP from the context ``x (B, in_features)`` to a density
  over one real ``y``. With ``head="mixture"`` it is Bishop's **mixture density network** (MDN),
  with ``head="bins"`` a categorical over bins of y's range.
- :class:`MSERegressor`: the same MLP trained with mean-squared error, the baseline that fails
  on multimodal targets (it predicts the conditional *mean*, which may lie between branches).
- :class:`QuantileNet`: the same MLP feeding an implicit-quantile head (no likelihood).
- :class:`AutoregressiveMDN2D`: a density over two reals, ``p(x_a) p(x_b | x_a)``, each factor a
  mixture of Gaussians: the autoregressive idea of the whole book, on continuous data.

The conditional models ``p(y | x)`` take the conditioning input by keyword, ``context=``, as
every model of the book takes its conditioning (:mod:`arnb.protocol`): ``log_prob(y, context=x)``,
``nll(y, context=x)``, ``sample(n, context=x)``. A context is ``(B, in_features)``, or one row
``(in_features,)`` used for every y.
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
    full_precision,
    normal_log_prob,
    pinball_loss,
    quantile_huber_loss,
)
from ..protocol import ARModule, fixed_length
from ..validation import check_int, check_real


def as_context(context: torch.Tensor, in_features: int, batch: int | None = None) -> torch.Tensor:
    """``context`` as a ``(batch, in_features)`` tensor: one row ``(in_features,)`` is repeated.

    ``batch`` None takes the context's own batch size (one row then gives a batch of one).
    """
    if context is None:
        raise ValueError("this model is conditional: pass context=, the x of p(y | x)")
    check_real(context, "context")
    if context.dim() == 1 and context.shape[0] == in_features:
        context = context.unsqueeze(0).expand(1 if batch is None else batch, in_features)
    check_real(context, "context", (batch, in_features))
    return context


def _no_prompt(prompt, length) -> None:
    """One real y has no prefix to prompt with and one length only."""
    if prompt is not None:
        raise ValueError("p(y | context) draws one number: there is no prompt to give")
    fixed_length(length, 1)


class ContextSampler:
    """``sample(n, *, context=)`` for the models of ``p(y | x)`` with an MLP ``body``: the body
    reads the context, and the subclass's ``_draw(features, generator)`` draws y from it."""

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        context: torch.Tensor,
        generator: torch.Generator | None = None,
        prompt: None = None,
        length: int | None = None,
    ) -> torch.Tensor:
        """``n`` draws of y, ``(n,)``: one per row of ``context (n, in_features)`` (or all from
        one row ``(in_features,)``)."""
        n = check_int(n, "n", low=1)
        _no_prompt(prompt, length)
        return self._draw(self.body(as_context(context, self.config.in_features, n)), generator)


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
            return super().forward(x.to(self[0].weight.dtype))


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


@dataclass
class QuantileConfig:
    in_features: int = 1
    hidden: int = 64
    depth: int = 2
    n_cos: int = 32  # cosine features of tau
    loss: str = "pinball"  # "pinball" or "huber" (IQN's quantile Huber loss)
    kappa: float = 1.0  # huber loss: quadratic within kappa of the target
    num_taus: int = 8  # fresh taus per example in each loss evaluation


@dataclass
class MDN2DConfig:
    num_components: int = 8
    hidden: int = 64
    depth: int = 2
    order: tuple[int, int] = (0, 1)  # (a, b): p(x_a) p(x_b | x_a)
    independent: bool = False  # the baseline: p(x_a) p(x_b), the second factor sees nothing
    min_scale: float = 1e-3


class ConditionalDensityNet(ContextSampler, ARModule):
    """``p(y | x)`` for ``y (B,)`` and a context ``x (B, in_features)``: an MLP plus a density
    head."""

    def __init__(self, config: MDNConfig | None = None, **kwargs):
        super().__init__()
        self.config = config = config or MDNConfig(**kwargs)
        self.body = MLP(config.in_features, config.hidden, config.depth)
        if config.head == "mixture":
            self.head = MixtureDensityHead(config.hidden, config.num_components, config.min_scale)
        elif config.head == "bins":
            self.head = BinnedDensityHead(config.hidden, config.num_bins, config.low, config.high)
        else:
            raise ValueError(f"head must be 'mixture' or 'bins', got {config.head!r}")

    def forward(self, context: torch.Tensor):
        """``context (B, in_features)`` -> the conditional distribution of y (a
        :class:`~arnb.distributions.GaussianMixture` or
        :class:`~arnb.distributions.BinnedDensity`)."""
        return self.head(self.body(as_context(context, self.config.in_features)))

    def log_prob(self, x: torch.Tensor, *, context: torch.Tensor) -> torch.Tensor:
        """``log p(y | context)`` in nats, ``(B,)``, of the values ``x (B,)`` of y.

        (The data argument is called ``x`` in every model of the book; here it holds the ys.)
        """
        check_real(x, "y", (None,))
        context = as_context(context, self.config.in_features, x.shape[0])
        return self.head(self.body(context)).log_prob(x.to(self.dtype))

    def _draw(self, features: torch.Tensor, generator) -> torch.Tensor:
        return self.head(features).sample(generator)


class MDN(ConditionalDensityNet):
    """A mixture density network: :class:`ConditionalDensityNet` with a mixture head."""

    def __init__(self, config: MDNConfig | None = None, **kwargs):
        config = config or MDNConfig(**kwargs)
        if config.head != "mixture":
            raise ValueError("an MDN has a mixture head; use ConditionalDensityNet for bins")
        super().__init__(config)

    def forward(self, context: torch.Tensor) -> GaussianMixture:
        return super().forward(context)


class MSERegressor(nn.Module):
    """``context (B, in_features) -> (B,)`` point prediction, trained with mean-squared error.

    It has no density, so no ``log_prob``/``nll``: its training loss is :meth:`mse`. Read as
    ``N(y | f(x), sigma^2)`` (:meth:`gaussian_log_prob`) it gets a NLL to compare with. Sizes
    come from an :class:`MDNConfig` (``in_features``, ``hidden``, ``depth``: the same MLP).
    """

    def __init__(self, config: MDNConfig | None = None, **kwargs):
        super().__init__()
        self.config = config = config or MDNConfig(**kwargs)
        self.body = MLP(config.in_features, config.hidden, config.depth)
        self.out = nn.Linear(config.hidden, 1)

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        context = as_context(context, self.config.in_features)
        with full_precision(context):
            return self.out(self.body(context)).squeeze(-1)

    def mse(self, y: torch.Tensor, *, context: torch.Tensor) -> torch.Tensor:
        """Mean squared error of the prediction: the training loss."""
        check_real(y, "y", (None,))
        pred = self(as_context(context, self.config.in_features, y.shape[0]))
        return ((pred - y.to(pred.dtype)) ** 2).mean()

    @torch.no_grad()
    def gaussian_log_prob(
        self, y: torch.Tensor, *, context: torch.Tensor, sigma: float
    ) -> torch.Tensor:
        """The regressor read as a density: ``N(y | f(x), sigma^2)``, ``(B,)`` nats; its best
        sigma is the RMS residual."""
        check_real(y, "y", (None,))
        pred = self(as_context(context, self.config.in_features, y.shape[0]))
        return normal_log_prob(y.to(pred.dtype), pred, torch.tensor(float(sigma)).to(pred))


class QuantileNet(ContextSampler, nn.Module):
    """``Q(tau | x)``: MLP features of ``context (B, in_features)`` and ``tau (B, N)`` ->
    ``(B, N)``.

    No likelihood: trained with :meth:`quantile_loss`, sampled by inverse CDF.
    """

    def __init__(self, config: QuantileConfig | None = None, **kwargs):
        super().__init__()
        self.config = config = config or QuantileConfig(**kwargs)
        if config.loss not in ("pinball", "huber"):
            raise ValueError(f"loss must be 'pinball' or 'huber', got {config.loss!r}")
        self.body = MLP(config.in_features, config.hidden, config.depth)
        self.head = ImplicitQuantileHead(config.hidden, config.hidden, config.n_cos)

    def forward(self, context: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        context = as_context(context, self.config.in_features)
        check_real(tau, "tau", (context.shape[0], None))
        return self.head(self.body(context), tau)

    def quantile_loss(
        self,
        y: torch.Tensor,
        *,
        context: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The training loss: mean quantile loss over ``num_taus`` fresh ``tau ~ U(0, 1)`` per y."""
        check_real(y, "y", (None,))
        context = as_context(context, self.config.in_features, y.shape[0])
        tau = torch.rand(y.shape[0], self.config.num_taus, generator=generator)
        tau = tau.to(context.device).clamp(1e-4, 1 - 1e-4)  # defined on the open interval
        pred = self(context, tau)
        target = y.to(pred.dtype).unsqueeze(1).expand_as(pred)
        if self.config.loss == "pinball":
            return pinball_loss(pred, target, tau.to(pred.dtype)).mean()
        return quantile_huber_loss(pred, target, tau.to(pred.dtype), self.config.kappa).mean()

    def _draw(self, features: torch.Tensor, generator) -> torch.Tensor:
        # the quantile function at tau ~ U(0, 1), one per row
        return self.head.sample(features, generator)


class AutoregressiveMDN2D(ARModule):
    """``p(x) = p(x_a) p(x_b | x_a)`` over ``x (B, 2)`` real, with ``(a, b) = order``.

    The first factor is a context-free mixture (its parameters are learned directly); the
    second is an MDN of ``x_a``. With ``independent=True`` the second factor ignores ``x_a`` too:
    the product of two marginals, the baseline that autoregression must beat. ``nll`` is per
    coordinate (half the NLL of a point).
    """

    def __init__(self, config: MDN2DConfig | None = None, **kwargs):
        super().__init__()
        self.config = config = config or MDN2DConfig(**kwargs)
        if sorted(config.order) != [0, 1]:
            raise ValueError(f"order must be (0, 1) or (1, 0), got {config.order}")
        self.order, self.independent = tuple(config.order), config.independent
        self.num_components, self.min_scale = config.num_components, config.min_scale
        k = config.num_components
        # first factor: raw (logit, mean, scale) parameters, spread out so components start apart
        self.first = nn.Parameter(
            torch.cat([torch.zeros(k), torch.linspace(-1.5, 1.5, k), torch.zeros(k)])
        )
        self.second = MDN(
            MDNConfig(
                in_features=1,
                hidden=config.hidden,
                depth=config.depth,
                num_components=k,
                min_scale=config.min_scale,
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
        """``x (B, 2)`` -> ``(B, 2, K, 3)``: (logit, mean, scale) of each coordinate's conditional.

        Row i belongs to coordinate i (not to position i of the order), as the causality probes
        expect.
        """
        check_real(x, "x", (None, 2))
        first, second = self.conditionals(x.to(self.dtype))
        params = [None, None]
        params[self.order[0]], params[self.order[1]] = first.params(), second.params()
        return torch.stack(params, dim=1)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, 2)`` -> ``(B,)`` log density in nats: ``log p(x_a) + log p(x_b | x_a)``."""
        check_real(x, "x", (None, 2))
        x = x.to(self.dtype)
        a, b = self.order
        first, second = self.conditionals(x)
        return first.log_prob(x[:, a]) + second.log_prob(x[:, b])

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        prompt: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        length: int | None = None,
    ) -> torch.Tensor:
        """``(n, 2)`` samples, one coordinate at a time in model order.

        ``prompt`` holds the first C <= 2 steps *in model order* of one sample ``(C,)`` or of
        each ``(n, C)``: with C = 1 it fixes ``x_a`` and ``x_b`` is drawn from
        ``p(x_b | x_a)``. ``length`` can only be None or 2.
        """
        fixed_length(length, 2)
        if prompt is not None:
            prompt = torch.as_tensor(prompt)
            check_real(prompt, "prompt")
        steps, c = self.start_buffer(n, prompt, (2,), dtype=self.dtype)  # (n, 2) in model order
        a, b = self.order
        if c < 1:
            steps[:, 0] = self._first_mixture(n).sample(generator)
        x = torch.zeros_like(steps)
        x[:, a] = steps[:, 0]
        if c < 2:
            _, second = self.conditionals(x)
            steps[:, 1] = second.sample(generator)
        x[:, b] = steps[:, 1]
        return x
