"""An RNN with a mixture-density output that draws pen strokes point by point (Graves 2013, sec. 4).

A drawing is a sequence of points ``x_t = (dx_t, dy_t, pen_t)``: a move and a flag that says the
pen leaves the paper after it. The model factorises

    p(x_1..x_T) = prod_t p(x_t | x_<t),
    p(x_t | x_<t) = [sum_m pi_m N((dx, dy) | mu_m, Sigma_m)] * Bernoulli(pen_t | q),

where an LSTM reads ``x_1..x_{t-1}`` (its hidden state is the summary of the past) and a linear
*head* turns the state into the ``6M + 1`` numbers of the conditional, a
:class:`~arnb.distributions.StrokeMixture`: M mixture logits, M two-dimensional means, M pairs of
standard deviations, M correlations and one pen logit.

:class:`StrokeModel` is what every stroke model shares (this file's two and
:class:`~arnb.models.handwriting_synthesis.HandwritingSynthesis`): the head's constraints,
``log_prob`` with a padding ``mask``, the NLL per pen point, the input checks. Padding is
ignored wherever the mask is False: its values are replaced by zeros *before* the network reads
them, so NaN or 1e30 there changes nothing, not even a gradient.

Numerical care (what keeps every loss finite, on any accepted input): weights by
``log_softmax``, closed-form log densities and ``logsumexp``; ``sigma >= sigma_floor``;
``|rho| <= rho_max < 1``; the head and the density in full precision even under bf16 autocast;
the pen term by a stable log-sigmoid.

Also here: the two baselines of the chapter (:class:`ContextFreeMixture`, the same head with no
context at all; and ``RNNMDN`` with ``components=1``, a unimodal Gaussian RNN).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..distributions import StrokeMixture, check_strokes
from ..protocol import ARModule
from ..validation import check_int


@dataclass
class RNNMDNConfig:
    """Sizes of an :class:`RNNMDN`. ``sigma_floor`` is in the data's (normalised) units."""

    hidden: int = 256
    layers: int = 1
    components: int = 20
    sigma_floor: float = 1e-3
    rho_max: float = 1 - 1e-4
    dropout: float = 0.0


class StrokeModel(ARModule):
    """Base of the stroke models: ``forward(x, **cond)`` gives raw head outputs ``(B, T, 6M+1)``.

    Subclasses set ``self.config`` (with ``components``, ``sigma_floor``, ``rho_max``) and
    ``self.start``, the point ``(0, 0, 1)`` ("pen up, not moved") read before the first one, and
    implement ``forward``. Conditioning (``text=``) passes through to ``forward``.
    """

    def mixture(self, raw: torch.Tensor) -> StrokeMixture:
        """The head's raw output ``(*S, 6M+1)`` as constrained conditionals."""
        c = self.config
        return StrokeMixture.from_raw(raw, c.components, c.sigma_floor, c.rho_max)

    def conditionals(self, x: torch.Tensor, **cond) -> StrokeMixture:
        """Every ``p(x_t | x_<t)`` of ``x (B, T, 3)``, fields of batch shape ``(B, T)``."""
        return self.mixture(self(x, **cond))

    def _head(self, h: torch.Tensor) -> torch.Tensor:
        # full-precision head: bf16 would round the means to 3 significant digits, a visible
        # NLL cost
        with torch.autocast(h.device.type, enabled=False):
            return self.head(h.to(self.head.weight.dtype))

    def _clean(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Checked ``x`` in the model's dtype and device, padding set to zero."""
        check_strokes(x, mask, name="x")
        if torch.as_tensor(x).dim() != 3:
            raise ValueError(f"x must be a batch (B, T, 3), got shape {tuple(x.shape)}")
        x = torch.as_tensor(x).to(self.device, self.dtype)
        if mask is None:
            return x
        # before the arithmetic, not after: NaN * 0 is NaN, and inf would reach the LSTM state
        return torch.where(self._mask(mask, x).unsqueeze(-1), x, torch.zeros((), dtype=x.dtype))

    def _mask(self, mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(mask, device=x.device).bool()

    def point_log_prob(
        self, x: torch.Tensor, *, mask: torch.Tensor | None = None, **cond
    ) -> torch.Tensor:
        """``log p(x_t | x_<t)`` of every point: ``x (B, T, 3) -> (B, T)`` nats, 0 on padding."""
        if torch.as_tensor(x).dim() == 3 and x.shape[0] == 0:
            return torch.zeros(x.shape[:2], dtype=self.dtype, device=self.device)
        x = self._clean(x, mask)
        lp = self.conditionals(x, **cond).log_prob(x)
        if mask is None:
            return lp
        return torch.where(self._mask(mask, lp), lp, torch.zeros((), dtype=lp.dtype))

    def log_prob(
        self, x: torch.Tensor, *, mask: torch.Tensor | None = None, **cond
    ) -> torch.Tensor:
        """``log p(x)`` of each drawing in nats: ``x (B, T, 3)``, padded where ``mask (B, T)``
        is False, ``-> (B,)``."""
        return self.point_log_prob(x, mask=mask, **cond).sum(-1)

    def scored_dims(self, x: torch.Tensor, *, mask: torch.Tensor | None = None, **cond):
        """A dimension is one pen point (3 numbers); padding is not scored."""
        if mask is None:
            return x.shape[0] * x.shape[1]
        return torch.as_tensor(mask).sum()

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        prompt: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        length: int | None = None,
        bias: float = 0.0,
        temperature: float = 1.0,
    ) -> torch.Tensor:
        """``(n, length, 3)`` drawings, one point at a time.

        A ``prompt (C, 3)`` or ``(n, C, 3)`` fixes the first C points (returned unchanged);
        ``bias``/``temperature``: see :meth:`StrokeMixture.adjust`. Coordinates are in the units
        the model was trained on.
        """
        out, start, _ = self._start(n, prompt, length)
        return self._draw(out, start, generator, bias, temperature)

    def _draw(self, out, start, generator, bias, temperature) -> torch.Tensor:
        """Fill ``out[:, start:]`` of the buffer ``out (n, length, 3)``; subclasses implement it."""
        raise NotImplementedError

    def _start(self, n: int, prompt, length: int | None) -> tuple[torch.Tensor, int, int]:
        """The sampling buffer ``(n, length, 3)`` with the prompt written in, its length C."""
        if length is None:
            raise ValueError("pass length=: the number of points to return, prompt included")
        length = check_int(length, "length", low=1)
        if prompt is not None:
            prompt = torch.as_tensor(prompt)
            check_strokes(prompt, name="prompt")
        out, c = self.start_buffer(n, prompt, (length, 3), dtype=self.dtype)
        return out, c, length


class RNNMDN(StrokeModel):
    """LSTM over the previous points, then the mixture-plus-pen head (Graves 2013, section 4).

    The input at step t is ``x_{t-1}`` (the start point ``(0, 0, 1)`` before the first), so the
    conditional of ``x_t`` sees exactly ``x_<t``.
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
        self.head = nn.Linear(config.hidden, StrokeMixture.num_raw(config.components))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw head outputs of every conditional: ``x (B, T, 3) -> (B, T, 6M+1)``."""
        start = self.start.expand(x.shape[0], 1, 3).to(x.dtype)
        h, _ = self.rnn(torch.cat([start, x[:, :-1]], dim=1))
        return self._head(h)

    def step(self, prev: torch.Tensor, state=None) -> tuple[StrokeMixture, tuple]:
        """One step of the recurrence: the last point ``prev (B, 3)`` -> the next conditional."""
        h, state = self.rnn(prev.unsqueeze(1), state)
        return self.mixture(self._head(h[:, 0])), state

    def _draw(self, out, start, generator, bias, temperature) -> torch.Tensor:
        # the prompt runs through the LSTM in one call; its last output predicts the next point
        n, length = out.shape[:2]
        inputs = torch.cat([self.start.expand(n, 1, 3).to(out.dtype), out[:, :start]], dim=1)
        h, state = self.rnn(inputs)
        params = self.mixture(self._head(h[:, -1]))
        for t in range(start, length):
            out[:, t] = params.adjust(bias, temperature).sample(generator)
            if t + 1 < length:
                params, state = self.step(out[:, t], state)
        return out


class ContextFreeMixture(StrokeModel):
    """Baseline: the same conditional at every step, whatever came before:
    ``p(x_t | x_<t) = p(x_t)``.

    What a mixture alone can do; the gap to :class:`RNNMDN` is what context is worth.
    """

    def __init__(self, config: RNNMDNConfig | None = None, **kwargs):
        super().__init__()
        self.config = config = config or RNNMDNConfig(**kwargs)
        if config.components < 1:
            raise ValueError(f"components must be >= 1, got {config.components}")
        self.raw = nn.Parameter(0.1 * torch.randn(StrokeMixture.num_raw(config.components)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, T, 3) -> (B, T, 6M+1)``, the same row everywhere."""
        return self.raw.expand(x.shape[0], x.shape[1], -1)

    def _draw(self, out, start, generator, bias, temperature) -> torch.Tensor:
        # independent points: a prompt is kept and otherwise ignored
        params = self.mixture(self.raw.expand(out.shape[0], -1)).adjust(bias, temperature)
        for t in range(start, out.shape[1]):
            out[:, t] = params.sample(generator)
        return out
