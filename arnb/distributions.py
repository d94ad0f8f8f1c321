"""Conditional heads for real-valued data: mixture of Gaussians, categorical over bins, quantiles.

An autoregressive model of real numbers needs a *density* for each conditional
``p(x_i | x_<i)``. A network produces a feature vector ``h`` from the context; a head turns it
into a distribution over one real number. Three heads, three trade-offs:

- :class:`MixtureDensityHead` -> :class:`GaussianMixture`: ``sum_k alpha_k N(y | mu_k, sigma_k)``.
  Exact log-likelihood, multimodal, a number of components to choose (Bishop's MDN).
- :class:`BinnedDensityHead` -> :class:`BinnedDensity`: a categorical over K bins with a uniform
  density inside each bin. Any shape, but a fixed range and resolution; its log *density* is the
  log probability of the bin minus the log bin width.
- :class:`ImplicitQuantileHead`: maps ``(h, tau)`` to the tau-quantile of ``y``, trained with the
  quantile (pinball) loss (IQN/AIQN). No likelihood, but sampling is one forward pass with
  ``tau ~ U(0, 1)`` and there is no component count to choose.

Numerical care, because NaN losses are the classic failure of mixture networks: weights through
``log_softmax``, closed-form Gaussian log densities, ``logsumexp`` over components (never the log of
a sum of exps), scales through ``softplus`` plus a floor so that no sigma collapses to zero, and
inputs checked for NaN/inf with an error that names the problem.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


# ----------------------------------------------------------------------------- input checks


def full_precision(t: torch.Tensor):
    """A context that turns autocast off: a head's last layer and its log densities run in float32.

    Under bfloat16 autocast a mean near 10 would be rounded to steps of 0.06, coarser than the
    narrowest components; these layers are tiny, so float32 costs nothing.
    """
    return torch.autocast(t.device.type, enabled=False)


def check_real(
    t: torch.Tensor, name: str = "y", shape: tuple[int | None, ...] | None = None
) -> None:
    """Raise a clear error unless ``t`` is a finite floating-point tensor of the given shape.

    ``shape`` may hold ``None`` for "any size" (e.g. ``(None, 1)`` for a batch of 1-D inputs).
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.dtype.is_floating_point:
        raise TypeError(
            f"{name} must be a floating-point tensor, got dtype {t.dtype}; use {name}.float()"
        )
    if shape is not None:
        ok = t.dim() == len(shape) and all(s is None or s == d for s, d in zip(shape, t.shape))
        if not ok:
            want = ", ".join("B" if s is None else str(s) for s in shape)
            raise ValueError(f"{name} must have shape ({want}), got {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s); clean the data first")


# ----------------------------------------------------------------------------- closed forms


def normal_log_prob(y: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``log N(y | mean, scale^2)`` in closed form (broadcasting); finite for any finite input."""
    z = (y - mean) / scale
    return -0.5 * z * z - torch.log(scale) - LOG_SQRT_2PI


def mixture_log_prob(
    logits: torch.Tensor, means: torch.Tensor, scales: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """``log sum_k softmax(logits)_k N(y | means_k, scales_k)`` for params ``(..., K)``, ``y (...)``.

    Computed as ``logsumexp_k(log_softmax(logits)_k + log N_k)``: the log of each term is formed
    first, and logsumexp subtracts the largest before exponentiating, so a point far in the tail
    (every ``N_k`` below the smallest float) still gets its correct, finite log density.
    """
    log_weights = F.log_softmax(logits, dim=-1)
    return torch.logsumexp(log_weights + normal_log_prob(y.unsqueeze(-1), means, scales), dim=-1)


# ----------------------------------------------------------------------------- mixture of Gaussians


class GaussianMixture:
    """A batch of 1-D Gaussian mixtures with parameters of shape ``(..., K)``.

    ``logits`` are unnormalised log weights (normalised here with ``log_softmax``), ``scales``
    must be positive. The interface follows ``torch.distributions``: ``log_prob``, ``sample``,
    ``mean``, ``variance``, plus ``cdf`` and ``icdf`` (by bisection) for quantile comparisons.
    """

    def __init__(self, logits: torch.Tensor, means: torch.Tensor, scales: torch.Tensor):
        if not (logits.shape == means.shape == scales.shape) or logits.dim() < 1:
            raise ValueError(
                "logits, means and scales must share one shape (..., K), got "
                f"{tuple(logits.shape)}, {tuple(means.shape)}, {tuple(scales.shape)}"
            )
        self.logits, self.means, self.scales = logits, means, scales

    @property
    def batch_shape(self) -> torch.Size:
        return self.logits.shape[:-1]

    @property
    def num_components(self) -> int:
        return self.logits.shape[-1]

    @property
    def weights(self) -> torch.Tensor:
        """Mixture weights ``alpha (..., K)``, summing to one."""
        return torch.softmax(self.logits, dim=-1)

    @property
    def mean(self) -> torch.Tensor:
        return (self.weights * self.means).sum(-1)

    @property
    def variance(self) -> torch.Tensor:
        """Law of total variance: mean of the variances plus variance of the means."""
        w = self.weights
        m = (w * self.means).sum(-1, keepdim=True)
        return (w * (self.scales**2 + (self.means - m) ** 2)).sum(-1)

    def params(self) -> torch.Tensor:
        """``(..., K, 3)``: (logit, mean, scale) per component, e.g. for gradient probes."""
        return torch.stack([self.logits, self.means, self.scales], dim=-1)

    def log_prob(self, y: torch.Tensor) -> torch.Tensor:
        """``y (...)`` with the batch shape -> ``(...)`` log density in nats."""
        check_real(y, "y")
        if y.shape != self.batch_shape:
            raise ValueError(
                f"y must have the mixture's batch shape {tuple(self.batch_shape)}, "
                f"got {tuple(y.shape)}"
            )
        return mixture_log_prob(self.logits, self.means, self.scales, y)

    def cdf(self, y: torch.Tensor) -> torch.Tensor:
        """``P(Y <= y)`` for ``y`` with the batch shape."""
        z = (y.unsqueeze(-1) - self.means) / (self.scales * math.sqrt(2))
        return (self.weights * 0.5 * (1 + torch.erf(z))).sum(-1)

    def icdf(self, tau: torch.Tensor, iters: int = 60) -> torch.Tensor:
        """Quantiles by bisection on the monotone CDF.

        ``tau`` has the batch shape (one level per mixture) or the batch shape plus one trailing
        dimension ``T`` (T levels per mixture, result ``(..., T)``).
        """
        extra = tau.dim() - len(self.batch_shape)
        if extra not in (0, 1) or tuple(tau.shape[: len(self.batch_shape)]) != tuple(
            self.batch_shape
        ):
            raise ValueError(
                f"tau must have shape {tuple(self.batch_shape)} or "
                f"{tuple(self.batch_shape)} + (T,), got {tuple(tau.shape)}"
            )
        mix = self
        if extra:
            k = self.num_components
            mix = GaussianMixture(
                *(
                    p.unsqueeze(-2).expand(*tau.shape, k)
                    for p in (self.logits, self.means, self.scales)
                )
            )
        spread = 12 * mix.scales.amax(-1)
        lo = mix.means.amin(-1) - spread
        hi = mix.means.amax(-1) + spread
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            below = mix.cdf(mid) < tau
            lo = torch.where(below, mid, lo)
            hi = torch.where(below, hi, mid)
        return 0.5 * (lo + hi)

    def sharpen(self, temperature: float) -> GaussianMixture:
        """A "temperature" for mixtures (not Boltzmann's): weights ``∝ alpha^(1/T)``, scales ``* sqrt(T)``.

        ``T < 1`` favours the heaviest component and narrows every component; ``T = 1`` is the
        model itself. This is the knob that sketch-rnn calls temperature.
        """
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        return GaussianMixture(
            self.logits / temperature, self.means, self.scales * math.sqrt(temperature)
        )

    @torch.no_grad()
    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """One draw per mixture, shape ``batch_shape``: a component by inverse CDF, then its Gaussian.

        Random numbers come from ``generator`` on the CPU, so results do not depend on the device.
        """
        from .sampling import sample_categorical

        flat_logits = self.logits.reshape(-1, self.num_components)
        k = sample_categorical(flat_logits, generator).to(self.means.device)
        mu = self.means.reshape(-1, self.num_components).gather(1, k[:, None]).squeeze(1)
        sd = self.scales.reshape(-1, self.num_components).gather(1, k[:, None]).squeeze(1)
        eps = torch.randn(mu.shape, generator=generator).to(mu)
        return (mu + sd * eps).reshape(self.batch_shape)


class MixtureDensityHead(nn.Module):
    """Features ``h (..., in_features)`` -> :class:`GaussianMixture` with ``num_components`` terms.

    One linear layer gives 3K numbers per input: logits, means and raw scales. The scale is
    ``softplus(raw) + min_scale``: smooth, positive, and never below ``min_scale``, so the NLL is
    bounded below by ``log(min_scale) + log sqrt(2 pi)`` instead of running to minus infinity
    when a component collapses onto a single data point.
    """

    def __init__(self, in_features: int, num_components: int, min_scale: float = 1e-3):
        super().__init__()
        if num_components < 1:
            raise ValueError(f"num_components must be >= 1, got {num_components}")
        if not min_scale > 0:
            raise ValueError(f"min_scale must be > 0, got {min_scale}")
        self.num_components, self.min_scale = num_components, min_scale
        self.proj = nn.Linear(in_features, 3 * num_components)

    def forward(self, h: torch.Tensor) -> GaussianMixture:
        with full_precision(h):
            logits, means, raw = self.proj(h.float()).chunk(3, dim=-1)
        return GaussianMixture(logits, means, F.softplus(raw) + self.min_scale)


# ----------------------------------------------------------------------------- categorical over bins


class BinnedDensity:
    """A piecewise-constant density: a categorical over equal bins of ``[low, high]``.

    ``logits (..., K)``. Within bin k the density is ``P(k) / width``, so
    ``log p(y) = log_softmax(logits)_k - log(width)``: forgetting the ``- log width`` would report
    the NLL of a *discrete* variable, not comparable with a density's NLL.
    """

    def __init__(self, logits: torch.Tensor, low: float, high: float):
        if not high > low:
            raise ValueError(f"need high > low, got [{low}, {high}]")
        self.logits, self.low, self.high = logits, float(low), float(high)
        self.num_bins = logits.shape[-1]
        self.width = (self.high - self.low) / self.num_bins

    @property
    def batch_shape(self) -> torch.Size:
        return self.logits.shape[:-1]

    @property
    def probs(self) -> torch.Tensor:
        return torch.softmax(self.logits, dim=-1)

    @property
    def centers(self) -> torch.Tensor:
        k = torch.arange(self.num_bins, device=self.logits.device, dtype=self.logits.dtype)
        return self.low + (k + 0.5) * self.width

    @property
    def mean(self) -> torch.Tensor:
        return (self.probs * self.centers).sum(-1)

    def bin_index(self, y: torch.Tensor) -> torch.Tensor:
        """Bin of each ``y``; ``high`` itself belongs to the last bin. Outside the range: an error."""
        check_real(y, "y")
        if bool(((y < self.low) | (y > self.high)).any()):
            raise ValueError(
                f"y must lie in the binned range [{self.low}, {self.high}], found "
                f"[{float(y.min()):.4g}, {float(y.max()):.4g}]"
            )
        k = torch.floor((y - self.low) / self.width).long()
        return k.clamp_(0, self.num_bins - 1)

    def log_prob(self, y: torch.Tensor) -> torch.Tensor:
        """Log *density* of ``y (...)`` in nats (log bin probability minus log bin width)."""
        if y.shape != self.batch_shape:
            raise ValueError(
                f"y must have the batch shape {tuple(self.batch_shape)}, got {tuple(y.shape)}"
            )
        k = self.bin_index(y)
        logp = F.log_softmax(self.logits, dim=-1).gather(-1, k.unsqueeze(-1)).squeeze(-1)
        return logp - math.log(self.width)

    @torch.no_grad()
    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """A bin by inverse CDF, then a uniform position inside it (the density is flat there)."""
        from .sampling import sample_categorical

        k = sample_categorical(self.logits.reshape(-1, self.num_bins), generator)
        u = torch.rand(k.shape, generator=generator)
        y = self.low + (k.double() + u.double()) * self.width
        return y.to(self.logits).reshape(self.batch_shape)


class BinnedDensityHead(nn.Module):
    """Features ``h (..., in_features)`` -> :class:`BinnedDensity` over ``num_bins`` bins of ``[low, high]``."""

    def __init__(self, in_features: int, num_bins: int, low: float, high: float):
        super().__init__()
        if num_bins < 2:
            raise ValueError(f"num_bins must be >= 2, got {num_bins}")
        self.num_bins, self.low, self.high = num_bins, low, high
        self.proj = nn.Linear(in_features, num_bins)

    def forward(self, h: torch.Tensor) -> BinnedDensity:
        with full_precision(h):
            return BinnedDensity(self.proj(h.float()), self.low, self.high)


# ----------------------------------------------------------------------------- quantiles


def _check_quantile_args(pred: torch.Tensor, target: torch.Tensor, tau: torch.Tensor) -> None:
    if pred.shape != tau.shape:
        raise ValueError(
            f"pred and tau must have the same shape, got {tuple(pred.shape)} and {tuple(tau.shape)}"
        )
    try:
        torch.broadcast_shapes(pred.shape, target.shape)
    except RuntimeError as e:
        raise ValueError(
            f"target of shape {tuple(target.shape)} does not broadcast against "
            f"pred of shape {tuple(pred.shape)}"
        ) from e
    if bool(((tau <= 0) | (tau >= 1)).any()):
        raise ValueError("tau must lie strictly inside (0, 1)")


def pinball_loss(pred: torch.Tensor, target: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """Quantile (pinball) loss ``rho_tau(u) = u * (tau - [u < 0])`` with ``u = target - pred``, elementwise.

    Its expectation over ``target ~ Y`` is minimised by the tau-quantile of ``Y`` (Koenker): an
    under-prediction costs ``tau`` per unit, an over-prediction ``1 - tau``.
    """
    _check_quantile_args(pred, target, tau)
    u = target - pred
    return u * (tau - (u < 0).to(u.dtype))


def quantile_huber_loss(
    pred: torch.Tensor, target: torch.Tensor, tau: torch.Tensor, kappa: float = 1.0
) -> torch.Tensor:
    """IQN's quantile Huber loss, elementwise: ``|tau - [u < 0]| * Huber_kappa(u) / kappa``.

    Quadratic within ``kappa`` of the target, so its gradient is smooth near the optimum; as
    ``kappa -> 0`` it tends to the pinball loss. Its minimiser is close to (not exactly) the quantile.
    """
    if not kappa > 0:
        raise ValueError(f"kappa must be > 0, got {kappa}")
    _check_quantile_args(pred, target, tau)
    u = target - pred
    huber = torch.where(u.abs() <= kappa, 0.5 * u * u, kappa * (u.abs() - 0.5 * kappa))
    return (tau - (u < 0).to(u.dtype)).abs() * huber / kappa


class ImplicitQuantileHead(nn.Module):
    """``(h (B, in_features), tau (B, N)) -> quantiles (B, N)``: an implicit quantile network head.

    tau is embedded with cosines ``cos(pi * i * tau), i = 0..n_cos-1`` and a linear layer (IQN,
    Dabney et al.), multiplied elementwise with the context features (so every tau reads the
    whole context), and mapped to one number by a small MLP. Nothing forces the output to grow
    with tau; the pinball loss makes it nearly monotone where data are plentiful.
    """

    def __init__(self, in_features: int, hidden: int = 64, n_cos: int = 32):
        super().__init__()
        self.n_cos = n_cos
        self.register_buffer(
            "freqs", math.pi * torch.arange(n_cos, dtype=torch.float32), persistent=False
        )
        self.tau_embed = nn.Sequential(nn.Linear(n_cos, in_features), nn.ReLU())
        self.out = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, h: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        if tau.dim() != 2 or h.dim() != 2 or tau.shape[0] != h.shape[0]:
            raise ValueError(
                f"need h (B, F) and tau (B, N), got {tuple(h.shape)} and {tuple(tau.shape)}"
            )
        with full_precision(h):
            phi = self.tau_embed(torch.cos(tau.float().unsqueeze(-1) * self.freqs))  # (B, N, F)
            return self.out(h.float().unsqueeze(1) * phi).squeeze(-1)

    @torch.no_grad()
    def sample(self, h: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One draw per row of ``h``: the quantile function at ``tau ~ U(0, 1)`` (inverse-CDF sampling)."""
        tau = torch.rand(h.shape[0], 1, generator=generator).to(h.device)
        return self(h, tau).squeeze(-1)
