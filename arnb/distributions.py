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

And for pen strokes (chapter 4), :class:`StrokeMixture`: Graves' bivariate Gaussian mixture over
a move ``(dx, dy)`` times a Bernoulli over the pen, the head of every stroke model.

Numerical care, because NaN losses are the classic failure of mixture networks: weights through
``log_softmax``, closed-form Gaussian log densities, ``logsumexp`` over components (never the log of
a sum of exps), scales through ``softplus`` plus a floor so that no sigma collapses to zero, and
inputs checked for NaN/inf with an error that names the problem. The value checks obey the one
switch of :mod:`arnb.validation` (off in training after the first batch).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .sampling import sample_categorical
from .validation import check_finite, check_positive, check_real, validation_enabled

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
LOG_2PI = math.log(2 * math.pi)


# ----------------------------------------------------------------------------- input checks


def full_precision(t: torch.Tensor):
    """A context that turns autocast off: a head's last layer and its log densities run in the
    parameters' dtype (float32, or float64 after ``.double()``), never in bfloat16.

    Under bfloat16 autocast a mean near 10 would be rounded to steps of 0.06, coarser than the
    narrowest components; these layers are tiny, so full precision costs nothing.
    """
    return torch.autocast(t.device.type, enabled=False)


# ----------------------------------------------------------------------------- closed forms


def normal_log_prob(y: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``log N(y | mean, scale^2)`` in closed form (broadcasting); finite for any finite input."""
    z = (y - mean) / scale
    return -0.5 * z * z - torch.log(scale) - LOG_SQRT_2PI


def mixture_log_prob(
    logits: torch.Tensor, means: torch.Tensor, scales: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """``log sum_k softmax(logits)_k N(y | means_k, scales_k)`` for params ``(..., K)``,
    ``y (...)``.

    Computed as ``logsumexp_k(log_softmax(logits)_k + log N_k)``: the log of each term is formed
    first, and logsumexp subtracts the largest before exponentiating, so a point far in the tail
    (every ``N_k`` below the smallest float) still gets its correct, finite log density.
    """
    log_weights = F.log_softmax(logits, dim=-1)
    return torch.logsumexp(log_weights + normal_log_prob(y.unsqueeze(-1), means, scales), dim=-1)


# ----------------------------------------------------------------------------- mixture of Gaussians


class GaussianMixture:
    """A batch of 1-D Gaussian mixtures with parameters of shape ``(..., K)``.

    ``logits`` are unnormalised log weights (normalised here with ``log_softmax``; ``-inf``
    is a weight of zero), ``scales`` must be positive. The interface follows
    ``torch.distributions``: ``log_prob``, ``sample``, ``mean``, ``variance``, plus ``cdf`` and
    ``icdf`` (by bisection) for quantile comparisons. The parameters are checked on
    construction (when :mod:`arnb.validation` is on): a NaN logit, a non-finite mean or a scale
    that is not > 0 would make every log density NaN.
    """

    def __init__(self, logits: torch.Tensor, means: torch.Tensor, scales: torch.Tensor):
        if not (logits.shape == means.shape == scales.shape) or logits.dim() < 1:
            raise ValueError(
                "logits, means and scales must share one shape (..., K), got "
                f"{tuple(logits.shape)}, {tuple(means.shape)}, {tuple(scales.shape)}"
            )
        if validation_enabled() and logits.numel():
            if bool((torch.isnan(logits) | (logits == math.inf)).any()):
                raise ValueError("logits hold NaN or +inf (a weight of zero is logit -inf)")
            if not bool((logits > -math.inf).any(-1).all()):
                raise ValueError("logits are all -inf for some mixture: no weight is left")
        check_finite(means, "means")
        check_positive(scales, "scales")
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
        """A "temperature" for mixtures (not Boltzmann's): weights ``∝ alpha^(1/T)``, scales
        ``* sqrt(T)``.

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
        """One draw per mixture, shape ``batch_shape``: a component by inverse CDF, then its
        Gaussian.

        Random numbers come from ``generator`` on the CPU, so results do not depend on the device.
        """
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
            logits, means, raw = self.proj(h.to(self.proj.weight.dtype)).chunk(3, dim=-1)
        return GaussianMixture(logits, means, F.softplus(raw) + self.min_scale)


# ---------------------------------------------------------------------------- categorical over bins


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
        """Bin of each ``y``; ``high`` itself belongs to the last bin. Outside the range: an
        error."""
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
        """A bin by inverse CDF, then a uniform position inside it (the density is flat there).

        The draw ends on the logits' device (the uniforms come from ``generator`` on the CPU, as
        in every sampler of the book, and are moved there).
        """
        k = sample_categorical(self.logits.reshape(-1, self.num_bins), generator)
        u = torch.rand(k.shape, generator=generator).to(k.device, torch.float64)
        y = self.low + (k.double() + u) * self.width
        return y.to(self.logits).reshape(self.batch_shape)


class BinnedDensityHead(nn.Module):
    """Features ``h (..., in_features)`` -> :class:`BinnedDensity` over ``num_bins`` bins of
    ``[low, high]``."""

    def __init__(self, in_features: int, num_bins: int, low: float, high: float):
        super().__init__()
        if num_bins < 2:
            raise ValueError(f"num_bins must be >= 2, got {num_bins}")
        self.num_bins, self.low, self.high = num_bins, low, high
        self.proj = nn.Linear(in_features, num_bins)

    def forward(self, h: torch.Tensor) -> BinnedDensity:
        with full_precision(h):
            return BinnedDensity(self.proj(h.to(self.proj.weight.dtype)), self.low, self.high)


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
    """Quantile (pinball) loss ``rho_tau(u) = u * (tau - [u < 0])`` with ``u = target - pred``,
    elementwise.

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
    ``kappa -> 0`` it tends to the pinball loss. Its minimiser is close to (not exactly) the
    quantile.
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
        dtype = self.out[0].weight.dtype
        with full_precision(h):
            angle = tau.to(dtype).unsqueeze(-1) * self.freqs.to(dtype)
            phi = self.tau_embed(torch.cos(angle))  # (B, N, F)
            return self.out(h.to(dtype).unsqueeze(1) * phi).squeeze(-1)

    @torch.no_grad()
    def sample(self, h: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One draw per row of ``h``: the quantile function at ``tau ~ U(0, 1)`` (inverse-CDF
        sampling)."""
        tau = torch.rand(h.shape[0], 1, generator=generator).to(h.device, h.dtype)
        return self(h, tau).squeeze(-1)


# ----------------------------------------------------------------------------- pen strokes


def check_strokes(x, mask: torch.Tensor | None = None, name: str = "strokes") -> None:
    """Raise a clear error unless ``x`` holds valid stroke-3 points ``(dx, dy, pen_lifted)``.

    ``x`` is one sequence ``(L, 3)`` or a batch ``(B, L, 3)`` (array or tensor): real numbers,
    at least one point per sequence. With ``mask (B, L)`` (True on real points) every row must
    mark at least one point, and only the marked points are checked, so padding may hold
    anything. Value checks (finite moves, pen exactly 0 or 1) obey :mod:`arnb.validation`.
    """
    t = torch.as_tensor(x)
    if t.dtype == torch.bool or t.dtype.is_complex:
        raise TypeError(f"{name} must be real numbers, got dtype {t.dtype}")
    if t.dim() not in (2, 3) or t.shape[-1] != 3:
        last = t.shape[-1] if t.dim() else "none"
        raise ValueError(
            f"{name} must have shape (L, 3) or (B, L, 3) with rows (dx, dy, pen_lifted); "
            f"got shape {tuple(t.shape)} (last dimension {last})"
        )
    if t.shape[-2] == 0:
        raise ValueError(f"{name} is an empty sequence: a drawing needs at least one point")
    t = t if t.dim() == 3 else t.unsqueeze(0)
    if mask is not None:
        mask = torch.as_tensor(mask, device=t.device)
        if mask.shape != t.shape[:2]:
            raise ValueError(f"mask must have shape {tuple(t.shape[:2])}, got {tuple(mask.shape)}")
        mask = mask.bool()
    if not validation_enabled() or t.numel() == 0:
        return
    if mask is not None:
        if not bool(mask.any(dim=1).all()):
            raise ValueError(f"{name} has an empty sequence (a row whose mask marks no point)")
        t = t[mask]
    t = t.reshape(-1, 3)
    finite = torch.isfinite(t)
    if not bool(finite.all()):
        bad = (~finite).nonzero()[0].tolist()
        raise ValueError(f"{name} contains NaN or inf (first at point {bad[0]}, column {bad[1]})")
    pen = t[:, 2]
    if not bool(((pen == 0) | (pen == 1)).all()):
        odd = pen[(pen != 0) & (pen != 1)][:3].tolist()
        raise ValueError(f"{name}: pen_lifted must be exactly 0 or 1, found {odd}")


def bivariate_normal_log_prob(
    xy: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, rho: torch.Tensor
) -> torch.Tensor:
    """``log N((x, y) | mu, [[sx^2, rho sx sy], [rho sx sy, sy^2]])`` in closed form.

    ``xy (*S, 2)`` broadcasts against ``mu, sigma (*S, M, 2)`` and ``rho (*S, M)``; returns
    ``(*S, M)``.
    """
    z = (xy.unsqueeze(-2) - mu) / sigma  # standardised coordinates, (*S, M, 2)
    zx, zy = z.unbind(-1)
    one_minus_rho2 = (1 - rho) * (1 + rho)  # exact near |rho| = 1, unlike 1 - rho**2
    quad = (zx * zx + zy * zy - 2 * rho * zx * zy) / one_minus_rho2
    return -LOG_2PI - sigma.log().sum(-1) - 0.5 * one_minus_rho2.log() - 0.5 * quad


class StrokeMixture(NamedTuple):
    """Graves' conditional of one pen point, for any batch shape ``S`` (e.g. ``(B, T)``):

        p(dx, dy, pen) = [sum_m pi_m N((dx, dy) | mu_m, Sigma_m)] * Bernoulli(pen | sigmoid(q)).

    ``logit_pi (*S, M)`` unnormalised mixture weights; ``mu (*S, M, 2)`` means of (dx, dy);
    ``sigma (*S, M, 2)`` standard deviations; ``rho (*S, M)`` correlations; ``pen_logit (*S,)``
    the logit ``q`` of ``pen_lifted = 1``. :meth:`from_raw` builds one from a network's output.
    """

    logit_pi: torch.Tensor
    mu: torch.Tensor
    sigma: torch.Tensor
    rho: torch.Tensor
    pen_logit: torch.Tensor

    @staticmethod
    def num_raw(components: int) -> int:
        """How many numbers a head outputs for M components: ``6M + 1``."""
        return 6 * components + 1

    @classmethod
    def from_raw(
        cls,
        raw: torch.Tensor,
        components: int,
        sigma_floor: float = 1e-3,
        rho_max: float = 1 - 1e-4,
    ) -> StrokeMixture:
        """Split a head's output ``raw (*S, 6M+1)`` into constrained parameters.

        ``sigma = sigma_floor + softplus(raw)`` (no component collapses onto a point) and
        ``rho = tanh(raw)`` clamped to ``|rho| <= rho_max < 1`` (the covariance never becomes
        singular). Half-precision input is promoted to float32.
        """
        m = components
        if raw.shape[-1] != cls.num_raw(m):
            raise ValueError(
                f"raw parameters need last dimension 6*{m}+1={6 * m + 1}, got {raw.shape[-1]}"
            )
        if raw.dtype in (torch.float16, torch.bfloat16):
            raw = raw.float()
        logit_pi, mu, sig, rho, pen = raw.split([m, 2 * m, 2 * m, m, 1], dim=-1)
        return cls(
            logit_pi=logit_pi,
            mu=mu.unflatten(-1, (m, 2)),
            sigma=sigma_floor + F.softplus(sig).unflatten(-1, (m, 2)),
            rho=torch.tanh(rho).clamp(-rho_max, rho_max),
            pen_logit=pen.squeeze(-1),
        )

    def map(self, fn) -> StrokeMixture:
        """Apply ``fn`` to every field (e.g. ``lambda t: t[:, 5]`` to pick step 5)."""
        return StrokeMixture(*(fn(t) for t in self))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x)`` in nats for points ``x (*S, 3)`` -> ``(*S,)``: mixture plus pen term.

        Weights by ``log_softmax``, components in closed form, the mixture by ``logsumexp``, the
        pen by a stable log-sigmoid: nothing is exponentiated and then logged.
        """
        x = x.to(self.mu.dtype)
        log_pi = F.log_softmax(self.logit_pi, dim=-1)
        log_comp = bivariate_normal_log_prob(x[..., :2], self.mu, self.sigma, self.rho)
        log_xy = torch.logsumexp(log_pi + log_comp, dim=-1)
        log_pen = -F.binary_cross_entropy_with_logits(self.pen_logit, x[..., 2], reduction="none")
        return log_xy + log_pen

    def adjust(self, bias: float = 0.0, temperature: float = 1.0) -> StrokeMixture:
        """The "bias" and "temperature" knobs of sampling - not a Boltzmann temperature.

        - Graves' **bias** ``b >= 0``: weights ``softmax((1 + b) * logits)`` (sharper), and every
          ``sigma`` multiplied by ``exp(-b)`` (narrower); the pen is left alone.
        - sketch-rnn's **temperature** ``tau > 0``: weights ``softmax(logits / tau)``,
          variances times ``tau`` (sigma times ``sqrt(tau)``), pen logit divided by ``tau``.

        ``b = 0, tau = 1`` gives the model's own distribution; both push samples toward the most
        likely strokes, trading variety for tidiness.
        """
        if not bias >= 0:
            raise ValueError(f"bias must be >= 0, got {bias}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        return StrokeMixture(
            logit_pi=self.logit_pi * (1 + bias) / temperature,
            mu=self.mu,
            sigma=self.sigma * math.exp(-bias) * math.sqrt(temperature),
            rho=self.rho,
            pen_logit=self.pen_logit / temperature,
        )

    @torch.no_grad()
    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """One point ``(B, 3)`` from each conditional of a mixture with batch shape ``(B,)``.

        A component by inverse CDF, then the correlated Gaussian as ``dx = mx + sx z1``,
        ``dy = my + sy (rho z1 + sqrt(1 - rho^2) z2)``, then the pen. All random numbers come
        from ``generator`` on the CPU, so results do not depend on the device.
        """
        b = self.logit_pi.shape[0]
        k = sample_categorical(self.logit_pi, generator)
        pick = k.view(b, 1, 1).expand(b, 1, 2)
        mu = self.mu.gather(1, pick).squeeze(1)
        sigma = self.sigma.gather(1, pick).squeeze(1)
        rho = self.rho.gather(1, k.view(b, 1)).squeeze(1)
        z = torch.randn(b, 2, generator=generator).to(mu)
        dx = mu[:, 0] + sigma[:, 0] * z[:, 0]
        dy = mu[:, 1] + sigma[:, 1] * (rho * z[:, 0] + torch.sqrt((1 - rho) * (1 + rho)) * z[:, 1])
        u = torch.rand(b, generator=generator).to(mu)
        pen = (u < torch.sigmoid(self.pen_logit)).to(mu.dtype)
        return torch.stack([dx, dy, pen], dim=-1)

    def as_torch(self):
        """The same conditionals as ``torch.distributions``: ``(MixtureSameFamily, Bernoulli)``.

        An independent implementation to check :meth:`log_prob` against (tests, notebook).
        """
        from torch.distributions import (
            Bernoulli,
            Categorical,
            MixtureSameFamily,
            MultivariateNormal,
        )

        sx, sy = self.sigma.unbind(-1)
        cov_xy = self.rho * sx * sy
        cov = torch.stack(
            [torch.stack([sx * sx, cov_xy], -1), torch.stack([cov_xy, sy * sy], -1)], -2
        )
        mix = MixtureSameFamily(
            Categorical(logits=self.logit_pi), MultivariateNormal(self.mu, covariance_matrix=cov)
        )
        return mix, Bernoulli(logits=self.pen_logit)
