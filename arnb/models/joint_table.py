"""The full joint table: one probability per configuration, estimated from counts with smoothing.

    p(x) = (c(x) + alpha) / (N + alpha * 2^D)

where c(x) counts the training images equal to x and ``alpha > 0`` (additive, or Laplace,
smoothing) keeps unseen configurations possible. It has ``2^D - 1`` free parameters, the most
any model of D binary dimensions can have; it is the baseline the factorised models are
compared with.

Only the *observed* patterns are stored (sorted integer codes and cumulative counts), so it
works for D up to 62, far beyond the 2^D that could be held in memory. The table is also an
autoregressive model with exact conditionals: coding a pattern with its first dimension (in the
order) as the most significant bit makes all patterns that share a prefix a contiguous range of
codes, so the mass of a prefix is one difference of cumulative counts plus the smoothing mass
of its ``2^(D - L)`` completions, and

    p(x_k = 1 | x_<k) = mass(x_<k, 1) / (mass(x_<k, 0) + mass(x_<k, 1)).

That gives it the same ``forward``/``log_prob``/``sample`` as FVSBN and MADE.
"""

from __future__ import annotations

import math

import torch

from .fvsbn import BinaryAR


class JointTable(BinaryAR):
    """Smoothed count table over ``{0, 1}^D``; fit with :meth:`fit` (no gradient training)."""

    def __init__(
        self, dims: int, alpha: float = 1.0, order: torch.Tensor | list[int] | None = None
    ):
        if dims > 62:
            raise ValueError(
                f"a joint table codes each pattern in one int64: dims must be <= 62, got {dims}"
            )
        super().__init__(dims, order)
        self._check_alpha(alpha)
        self.alpha = float(alpha)
        self.register_buffer("codes", torch.zeros(0, dtype=torch.long))  # sorted distinct patterns
        self.register_buffer("cumcounts", torch.zeros(1, dtype=torch.float64))  # (U + 1,)
        # A model with no data is uniform: every configuration gets alpha / (alpha 2^D).

    @staticmethod
    def _check_alpha(alpha: float) -> None:
        if not (alpha > 0 and math.isfinite(alpha)):
            raise ValueError(f"smoothing alpha must be a positive finite number, got {alpha}")

    @property
    def device(self) -> torch.device:  # no parameters: use a buffer
        return self.codes.device

    @property
    def num_train(self) -> float:
        return float(self.cumcounts[-1])

    def num_free_parameters(self) -> int:
        """``2^D - 1``: one probability per configuration, less one for normalisation."""
        return 2**self.dims - 1

    def num_stored_patterns(self) -> int:
        return int(self.codes.numel())

    def _codes(self, x: torch.Tensor) -> torch.Tensor:
        """Integer code of each row in the model's order (first step = most significant bit)."""
        weights = 2 ** torch.arange(self.dims - 1, -1, -1, dtype=torch.long, device=x.device)
        return (x[:, self.order.to(x.device)].long() * weights).sum(-1)

    @torch.no_grad()
    def fit(self, data: torch.Tensor, alpha: float | None = None) -> JointTable:
        """Count the patterns of ``data (N, D)`` in {0, 1}; optionally change ``alpha``. Returns
        self."""
        data = self._check_input(data, "data")
        if alpha is not None:
            self._check_alpha(alpha)
            self.alpha = float(alpha)
        codes, counts = torch.unique(self._codes(data), sorted=True, return_counts=True)
        self.codes = codes.to(self.codes.device)
        cum = torch.zeros(len(counts) + 1, dtype=torch.float64)
        cum[1:] = torch.cumsum(counts.double(), 0)
        self.cumcounts = cum.to(self.codes.device)
        return self

    def _log_z(self) -> float:
        return math.log(self.num_train + self.alpha * 2.0**self.dims)

    def _range_count(self, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        """Training images whose code lies in ``[lo, hi)`` (elementwise, float64)."""
        a = torch.searchsorted(self.codes, lo.contiguous())
        b = torch.searchsorted(self.codes, hi.contiguous())
        return self.cumcounts[b] - self.cumcounts[a]

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact ``log p(x)`` from the table: ``x (B, D)`` in {0,1} -> ``(B,)`` nats.

        The counts are kept in float64, so the result is float64 (float32 after ``.float()``).
        """
        code = self._codes(self._check_input(x).to(self.device))
        count = self._range_count(code, code + 1)
        return torch.log(count + self.alpha) - self._log_z()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Exact conditional logits ``(B, D)`` of ``p(x_d = 1 | x before d)`` (float64)."""
        x = x.to(self.device).round().long()
        return torch.stack([self._step_logit(x, k) for k in range(self.dims)], -1)[:, self.rank]

    def _step_logit(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """log mass(prefix, 1) - log mass(prefix, 0) for the prefix ``x[order[:k]]``."""
        d = self.dims
        prefix = x[:, self.order[:k]]
        weights = 2 ** torch.arange(k - 1, -1, -1, dtype=torch.long, device=x.device)
        code = (prefix * weights).sum(-1)  # (B,)
        width = 1 << (d - k - 1)  # completions of a prefix of length k + 1
        lo0 = (code * 2) * width
        lo1 = (code * 2 + 1) * width
        smooth = self.alpha * float(width)
        m0 = self._range_count(lo0, lo0 + width) + smooth
        m1 = self._range_count(lo1, lo1 + width) + smooth
        return torch.log(m1) - torch.log(m0)

    def conditional_logit(self, x: torch.Tensor, step: int) -> torch.Tensor:
        return self._step_logit(x.to(self.device).long(), step)


def select_alpha(
    train: torch.Tensor,
    val: torch.Tensor,
    alphas: list[float] | None = None,
    order: torch.Tensor | None = None,
) -> tuple[float, dict[float, float]]:
    """The smoothing strength with the lowest validation NLL, and the NLL of each tried.

    Fits a :class:`JointTable` on ``train (N, D)`` for each ``alpha`` and evaluates on ``val``.
    """
    alphas = alphas or [10.0**e for e in range(-6, 2)]
    table = JointTable(train.shape[1], order=order)
    scores = {}
    for a in alphas:
        table.fit(train, alpha=a)
        scores[a] = float(-table.log_prob(val).mean())
    best = min(scores, key=scores.get)
    return best, scores
