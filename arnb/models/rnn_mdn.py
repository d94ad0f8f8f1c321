"""An RNN with a mixture-density output that draws pen strokes point by point (Graves 2013, section 4).

A drawing is a sequence of points ``x_t = (dx_t, dy_t, pen_t)``: a move and a flag that says the
pen leaves the paper after it. The model factorises

    p(x_1..x_T) = prod_t p(x_t | x_<t),
    p(x_t | x_<t) = [sum_m pi_m N((dx, dy) | mu_m, Sigma_m)] * Bernoulli(pen_t | q),

where an LSTM reads ``x_1..x_{t-1}`` (its hidden state is the summary of the past) and a linear
*head* turns the state into the ``6M + 1`` numbers of the conditional: M mixture logits, M
two-dimensional means, M pairs of standard deviations, M correlations and one pen logit.

Numerical care (what keeps every loss finite, on any accepted input):

- weights by ``log_softmax``, the log density of each component in closed form, the mixture by
  ``logsumexp`` - nothing is exponentiated and then logged;
- ``sigma = sigma_floor + softplus(raw)``: a component cannot collapse onto a point;
- ``rho = tanh(raw)`` clamped to ``|rho| <= rho_max < 1``, and ``1 - rho^2`` computed as
  ``(1 - rho)(1 + rho)``: the covariance never becomes singular;
- the head and the density run in float32 even under bf16 autocast;
- the pen term by ``binary_cross_entropy_with_logits`` (a stable log-sigmoid);
- inputs are checked (:func:`arnb.data.stroke_batches.check_strokes`) before any of it.

Also here: the two baselines of the chapter (:class:`ContextFreeMixture`, the same head with no
context at all; and ``RNNMDN`` with ``components=1``, a unimodal Gaussian RNN), and the
bias/temperature knobs of sampling (:func:`adjust_for_sampling`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..data.stroke_batches import check_strokes
from ..protocol import ARModule
from ..sampling import sample_categorical

LOG_2PI = math.log(2 * math.pi)


class MixtureParams(NamedTuple):
    """Parameters of ``p(x_t | x_<t)`` for any batch shape ``S`` (e.g. ``(B, T)``).

    ``logit_pi (*S, M)`` unnormalised mixture weights; ``mu (*S, M, 2)`` means of (dx, dy);
    ``sigma (*S, M, 2)`` standard deviations; ``rho (*S, M)`` correlations; ``pen_logit (*S,)``
    the logit of ``pen_lifted = 1``.
    """

    logit_pi: torch.Tensor
    mu: torch.Tensor
    sigma: torch.Tensor
    rho: torch.Tensor
    pen_logit: torch.Tensor

    def map(self, fn) -> MixtureParams:
        """Apply ``fn`` to every field (e.g. ``lambda t: t[:, 5]`` to pick step 5)."""
        return MixtureParams(*(fn(t) for t in self))


def num_raw_params(components: int) -> int:
    """How many numbers the head outputs for M components: ``6M + 1``."""
    return 6 * components + 1


def mixture_params(
    raw: torch.Tensor, components: int, sigma_floor: float = 1e-3, rho_max: float = 1 - 1e-4
) -> MixtureParams:
    """Split the head's output ``raw (*S, 6M+1)`` into constrained :class:`MixtureParams`."""
    m = components
    if raw.shape[-1] != num_raw_params(m):
        raise ValueError(
            f"raw parameters need last dimension 6*{m}+1={6 * m + 1}, got {raw.shape[-1]}"
        )
    # the density is evaluated in float32 (or float64), never in half precision
    if raw.dtype in (torch.float16, torch.bfloat16):
        raw = raw.float()
    logit_pi, mu, sig, rho, pen = raw.split([m, 2 * m, 2 * m, m, 1], dim=-1)
    return MixtureParams(
        logit_pi=logit_pi,
        mu=mu.unflatten(-1, (m, 2)),
        sigma=sigma_floor + F.softplus(sig).unflatten(-1, (m, 2)),
        rho=torch.tanh(rho).clamp(-rho_max, rho_max),
        pen_logit=pen.squeeze(-1),
    )


def bivariate_normal_log_prob(
    xy: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, rho: torch.Tensor
) -> torch.Tensor:
    """``log N((x, y) | mu, [[sx^2, rho sx sy], [rho sx sy, sy^2]])`` in closed form.

    ``xy (*S, 2)`` broadcasts against ``mu, sigma (*S, M, 2)`` and ``rho (*S, M)``; returns ``(*S, M)``.
    """
    z = (xy.unsqueeze(-2) - mu) / sigma  # standardised coordinates, (*S, M, 2)
    zx, zy = z.unbind(-1)
    one_minus_rho2 = (1 - rho) * (1 + rho)  # exact near |rho| = 1, unlike 1 - rho**2
    quad = (zx * zx + zy * zy - 2 * rho * zx * zy) / one_minus_rho2
    return -LOG_2PI - sigma.log().sum(-1) - 0.5 * one_minus_rho2.log() - 0.5 * quad


def point_log_prob(params: MixtureParams, x: torch.Tensor) -> torch.Tensor:
    """``log p(x_t | x_<t)`` in nats for points ``x (*S, 3)``: the mixture term plus the pen term -> ``(*S,)``."""
    x = x.to(params.mu.dtype)
    log_pi = F.log_softmax(params.logit_pi, dim=-1)
    log_xy = torch.logsumexp(
        log_pi + bivariate_normal_log_prob(x[..., :2], params.mu, params.sigma, params.rho), dim=-1
    )
    log_pen = -F.binary_cross_entropy_with_logits(params.pen_logit, x[..., 2], reduction="none")
    return log_xy + log_pen


def adjust_for_sampling(
    params: MixtureParams, bias: float = 0.0, temperature: float = 1.0
) -> MixtureParams:
    """The "bias" and "temperature" knobs of sampling - not a Boltzmann temperature.

    - Graves' **bias** ``b >= 0``: weights ``softmax((1 + b) * logits)`` (sharper), and every
      ``sigma`` multiplied by ``exp(-b)`` (narrower); the pen is left alone.
    - sketch-rnn's **temperature** ``tau > 0``: weights ``softmax(logits / tau)``, variances times
      ``tau`` (sigma times ``sqrt(tau)``), pen logit divided by ``tau``.
    ``b = 0, tau = 1`` gives the model's own distribution; both push samples toward the most
    likely strokes, trading variety for tidiness.
    """
    if bias < 0:
        raise ValueError(f"bias must be >= 0, got {bias}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return MixtureParams(
        logit_pi=params.logit_pi * (1 + bias) / temperature,
        mu=params.mu,
        sigma=params.sigma * math.exp(-bias) * math.sqrt(temperature),
        rho=params.rho,
        pen_logit=params.pen_logit / temperature,
    )


def sample_points(params: MixtureParams, generator: torch.Generator | None = None) -> torch.Tensor:
    """One point ``(B, 3)`` from each conditional of ``params`` with batch shape ``(B,)``.

    A component by inverse CDF (:func:`arnb.sampling.sample_categorical`), then the correlated
    Gaussian as ``dx = mx + sx z1``, ``dy = my + sy (rho z1 + sqrt(1 - rho^2) z2)``, then the pen.
    All random numbers come from ``generator`` on the CPU, so results do not depend on the device.
    """
    b = params.logit_pi.shape[0]
    k = sample_categorical(params.logit_pi, generator)
    pick = k.view(b, 1, 1).expand(b, 1, 2)
    mu = params.mu.gather(1, pick).squeeze(1)
    sigma = params.sigma.gather(1, pick).squeeze(1)
    rho = params.rho.gather(1, k.view(b, 1)).squeeze(1)
    z = torch.randn(b, 2, generator=generator).to(mu.device)
    dx = mu[:, 0] + sigma[:, 0] * z[:, 0]
    dy = mu[:, 1] + sigma[:, 1] * (rho * z[:, 0] + torch.sqrt((1 - rho) * (1 + rho)) * z[:, 1])
    u = torch.rand(b, generator=generator).to(mu.device)
    pen = (u < torch.sigmoid(params.pen_logit)).float()
    return torch.stack([dx, dy, pen], dim=-1)


def start_strokes(
    prompt: torch.Tensor | None, n: int, length: int, device: torch.device
) -> tuple[torch.Tensor, int]:
    """The output buffer ``(n, length, 3)`` of a stroke sampler with the prompt copied in, and the
    first position left to sample. ``prompt (C, 3)`` or ``(n, C, 3)``, checked like any strokes."""
    if n < 1 or length < 1:
        raise ValueError(f"n and length must be >= 1, got n={n}, length={length}")
    out = torch.zeros(n, length, 3, device=device)
    if prompt is None:
        return out, 0
    prompt = torch.as_tensor(prompt, dtype=torch.float32)
    check_strokes(prompt, name="prompt")
    prompt = prompt.expand(n, -1, -1) if prompt.dim() == 2 else prompt
    if prompt.shape[0] != n or prompt.shape[1] > length:
        raise ValueError(
            f"prompt must have shape (n={n}, C<={length}, 3), got {tuple(prompt.shape)}"
        )
    out[:, : prompt.shape[1]] = prompt.to(device)
    return out, prompt.shape[1]


def as_torch_distributions(params: MixtureParams):
    """The same conditionals as ``torch.distributions`` objects: ``(MixtureSameFamily, Bernoulli)``.

    An independent implementation to check :func:`point_log_prob` against (tests, notebook).
    """
    from torch.distributions import Bernoulli, Categorical, MixtureSameFamily, MultivariateNormal

    sx, sy = params.sigma.unbind(-1)
    cov = torch.stack(
        [
            torch.stack([sx * sx, params.rho * sx * sy], -1),
            torch.stack([params.rho * sx * sy, sy * sy], -1),
        ],
        -2,
    )
    mix = MixtureSameFamily(
        Categorical(logits=params.logit_pi), MultivariateNormal(params.mu, covariance_matrix=cov)
    )
    return mix, Bernoulli(logits=params.pen_logit)


@dataclass
class RNNMDNConfig:
    """Sizes of an :class:`RNNMDN`. ``sigma_floor`` is in the data's (normalised) units."""

    hidden: int = 256
    layers: int = 1
    components: int = 20
    sigma_floor: float = 1e-3
    rho_max: float = 1 - 1e-4
    dropout: float = 0.0


class _MixtureModel(ARModule):
    """What the RNN-MDN and the context-free baseline share: the head, the NLL, the checks."""

    config: RNNMDNConfig

    def params(self, x: torch.Tensor) -> MixtureParams:
        """Constrained parameters of every conditional, ``x (B, T, 3) ->`` fields of batch shape ``(B, T)``."""
        c = self.config
        return mixture_params(self(x), c.components, c.sigma_floor, c.rho_max)

    def point_log_prob(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``log p(x_t | x_<t)`` for every point: ``x (B, T, 3) -> (B, T)`` nats, 0 where ``mask`` is False."""
        check_strokes(x, mask, name="x")
        if x.dim() != 3:
            raise ValueError(f"x must be a batch (B, T, 3), got shape {tuple(x.shape)}")
        x = x.to(self.device, torch.float32)
        lp = point_log_prob(self.params(x), x)
        return lp if mask is None else lp * mask.to(lp.device)

    def log_prob(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``log p(x)`` of each drawing in nats: ``x (B, T, 3)`` (padded, with ``mask (B, T)``) ``-> (B,)``."""
        return self.point_log_prob(x, mask).sum(-1)

    def nll_per_point(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Mean NLL per real point in nats (the training loss and the chapter's metric)."""
        lp = self.point_log_prob(x, mask)
        n = lp.numel() if mask is None else mask.sum()
        return -lp.sum() / n


class RNNMDN(_MixtureModel):
    """LSTM over the previous points, then the mixture-plus-pen head (Graves 2013, section 4).

    The input at step t is ``x_{t-1}`` (a start point ``(0, 0, 1)`` - "pen up, not moved" - before
    the first), so the conditional of ``x_t`` sees exactly ``x_<t``.
    """

    def __init__(self, config: RNNMDNConfig | None = None, **kwargs):
        super().__init__()
        self.config = config = config or RNNMDNConfig(**kwargs)
        if config.components < 1 or config.hidden < 1 or config.layers < 1:
            raise ValueError(f"components, hidden and layers must be >= 1, got {config}")
        if not 0 < config.rho_max < 1 or not config.sigma_floor > 0:
            raise ValueError("need 0 < rho_max < 1 and sigma_floor > 0")
        self.register_buffer("start", torch.tensor([0.0, 0.0, 1.0]))
        self.rnn = nn.LSTM(
            3,
            config.hidden,
            config.layers,
            batch_first=True,
            dropout=config.dropout if config.layers > 1 else 0.0,
        )
        self.head = nn.Linear(config.hidden, num_raw_params(config.components))

    def _head(self, h: torch.Tensor) -> torch.Tensor:
        # float32 head: bf16 would round the means to 3 significant digits, a visible NLL cost
        with torch.autocast(h.device.type, enabled=False):
            return self.head(h.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw head outputs of every conditional: ``x (B, T, 3) -> (B, T, 6M+1)`` (teacher forcing)."""
        inputs = torch.cat([self.start.expand(x.shape[0], 1, 3).to(x.dtype), x[:, :-1]], dim=1)
        h, _ = self.rnn(inputs)
        return self._head(h)

    def step(self, prev: torch.Tensor, state=None) -> tuple[MixtureParams, tuple]:
        """One step of the recurrence: the last point ``prev (B, 3)`` -> params of the next one, new state."""
        h, state = self.rnn(prev.unsqueeze(1), state)
        c = self.config
        return mixture_params(self._head(h[:, 0]), c.components, c.sigma_floor, c.rho_max), state

    @torch.no_grad()
    def sample(
        self,
        n: int,
        prompt: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        length: int = 50,
        bias: float = 0.0,
        temperature: float = 1.0,
    ) -> torch.Tensor:
        """``(n, length, 3)`` drawings, one point at a time; a ``prompt (C, 3)`` or ``(n, C, 3)``
        fixes the first C points (returned unchanged). ``bias``/``temperature``: see
        :func:`adjust_for_sampling`. Coordinates are in the units the model was trained on."""
        out, start = start_strokes(prompt, n, length, self.device)
        # run the prompt through the LSTM in one call; its last output predicts the first new point
        prev = self.start.expand(n, 1, 3)
        inputs = torch.cat([prev, out[:, : max(start - 1, 0)]], dim=1) if start else prev
        h, state = self.rnn(inputs)
        c = self.config
        params = mixture_params(self._head(h[:, -1]), c.components, c.sigma_floor, c.rho_max)
        if start:
            params, state = self.step(out[:, start - 1], state)
        for t in range(start, length):
            out[:, t] = sample_points(adjust_for_sampling(params, bias, temperature), generator)
            if t + 1 < length:
                params, state = self.step(out[:, t], state)
        return out


class ContextFreeMixture(_MixtureModel):
    """Baseline: the same conditional at every step, whatever came before, ``p(x_t | x_<t) = p(x_t)``.

    What a mixture alone can do; the gap to :class:`RNNMDN` is what context is worth.
    """

    def __init__(self, config: RNNMDNConfig | None = None, **kwargs):
        super().__init__()
        self.config = config = config or RNNMDNConfig(**kwargs)
        self.raw = nn.Parameter(0.1 * torch.randn(num_raw_params(config.components)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, T, 3) -> (B, T, 6M+1)``, the same row everywhere."""
        return self.raw.expand(x.shape[0], x.shape[1], -1)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        prompt: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        length: int = 50,
        bias: float = 0.0,
        temperature: float = 1.0,
    ) -> torch.Tensor:
        """``(n, length, 3)`` independent points (a prompt is kept and otherwise ignored)."""
        out, start = start_strokes(prompt, n, length, self.device)
        c = self.config
        params = mixture_params(self.raw.expand(n, -1), c.components, c.sigma_floor, c.rho_max)
        params = adjust_for_sampling(params, bias, temperature)
        for t in range(start, length):
            out[:, t] = sample_points(params, generator)
        return out
