"""Toy data whose true distribution is known: the inverse-sine problem and two moons.

**Inverse sine** (Bishop's classic MDN example, in the form used by many tutorials)::

    y ~ U(-10.5, 10.5),    x = 7 sin(0.75 y) + 0.5 y + noise,    noise ~ N(0, noise_std^2)

The forward map y -> x is a function; the *inverse* problem p(y | x) has up to several branches
for one x, so a regressor that predicts one number per x must fail. Because p(y) and p(x | y) are
known, the true conditional p(y | x) = p(x | y) p(y) / p(x) and its entropy H(Y | X), the
**Bayes floor** of any model's expected NLL, follow by one-dimensional numerical integration.

**Two moons**: two interleaved half circles with Gaussian noise, a 2-D set on which the
conditional p(x2 | x1) is bimodal for some x1, so the order of an autoregressive factorization
and the shape of its conditionals matter.
"""

from __future__ import annotations

import math

import numpy as np
import torch

Y_LOW, Y_HIGH = -10.5, 10.5


def inverse_sine_mean(y: torch.Tensor | np.ndarray):
    """The noiseless forward map ``f(y) = 7 sin(0.75 y) + 0.5 y``."""
    sin = torch.sin if isinstance(y, torch.Tensor) else np.sin
    return 7.0 * sin(0.75 * y) + 0.5 * y


def inverse_sine(
    n: int, noise_std: float = 1.0, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` draws of the inverse-sine problem: ``x (n, 1)`` (the input) and ``y (n,)`` (the
    target)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not noise_std > 0:
        raise ValueError(
            f"noise_std must be > 0 (the floor is -inf without noise), got {noise_std}"
        )
    y = Y_LOW + (Y_HIGH - Y_LOW) * torch.rand(n, generator=generator, dtype=torch.float64)
    x = inverse_sine_mean(y) + noise_std * torch.randn(n, generator=generator, dtype=torch.float64)
    return x.float().unsqueeze(1), y.float()


def _y_grid(points: int) -> np.ndarray:
    return np.linspace(Y_LOW, Y_HIGH, points)


def inverse_sine_log_px(
    x: np.ndarray, noise_std: float = 1.0, grid: int = 8001, chunk: int = 512
) -> np.ndarray:
    """``log p(x)`` for an array of x: ``p(x) = (1/21) int N(x | f(y), s^2) dy`` by the trapezoid
    rule.

    The integrand in y is a bump of width about ``s / |f'(y)| >= s / 5.75``; the default grid
    (spacing 0.0026) resolves it for ``s >= 0.1``.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    yg = _y_grid(grid)
    f = inverse_sine_mean(yg)
    out = np.empty_like(x)
    for i in range(0, len(x), chunk):
        z = (x[i : i + chunk, None] - f[None]) / noise_std
        dens = np.exp(-0.5 * z * z) / (math.sqrt(2 * math.pi) * noise_std)
        out[i : i + chunk] = np.log(np.trapezoid(dens, yg, axis=1) / (Y_HIGH - Y_LOW))
    return out


def inverse_sine_log_prob(y: torch.Tensor, x: torch.Tensor, noise_std: float = 1.0) -> torch.Tensor:
    """The *true* ``log p(y | x)`` for ``y (B,)`` and ``x (B, 1)`` (Bayes' rule, p(x)
    numerically)."""
    xs = x.reshape(-1).double().cpu().numpy()
    ys = y.reshape(-1).double().cpu().numpy()
    inside = (ys >= Y_LOW) & (ys <= Y_HIGH)
    z = (xs - inverse_sine_mean(ys)) / noise_std
    log_px_given_y = -0.5 * z * z - math.log(noise_std) - 0.5 * math.log(2 * math.pi)
    logp = log_px_given_y - math.log(Y_HIGH - Y_LOW) - inverse_sine_log_px(xs, noise_std)
    logp = np.where(inside, logp, -np.inf)
    return torch.as_tensor(logp, dtype=torch.float64)


def inverse_sine_conditional_density(x_values, y_grid, noise_std: float = 1.0) -> np.ndarray:
    """``p(y | x)`` on ``y_grid (G,)`` for each of ``x_values (M,)`` -> ``(M, G)`` (for plots)."""
    xv = np.asarray(x_values, dtype=np.float64).reshape(-1)
    yg = np.asarray(y_grid, dtype=np.float64).reshape(-1)
    z = (xv[:, None] - inverse_sine_mean(yg)[None]) / noise_std
    joint = np.exp(-0.5 * z * z) / (math.sqrt(2 * math.pi) * noise_std) / (Y_HIGH - Y_LOW)
    joint = joint * ((yg >= Y_LOW) & (yg <= Y_HIGH))[None]
    return joint / np.exp(inverse_sine_log_px(xv, noise_std))[:, None]


def inverse_sine_quantiles(x_values, taus, noise_std: float = 1.0, grid: int = 8001) -> np.ndarray:
    """True conditional quantiles ``Q(tau | x)`` -> ``(M, T)`` for ``x_values (M,)``, ``taus (T,)``.

    The CDF of p(y | x) is integrated on a fine y grid and inverted by linear interpolation.
    """
    yg = _y_grid(grid)
    dens = inverse_sine_conditional_density(x_values, yg, noise_std)
    cdf = np.concatenate(
        [
            np.zeros((len(dens), 1)),
            np.cumsum(0.5 * (dens[:, 1:] + dens[:, :-1]) * np.diff(yg), axis=1),
        ],
        axis=1,
    )
    cdf /= cdf[:, -1:]
    taus = np.asarray(taus, dtype=np.float64).reshape(-1)
    return np.stack([np.interp(taus, c, yg) for c in cdf])


def inverse_sine_bayes_floor(noise_std: float = 1.0, grid: int = 8001, x_grid: int = 6001) -> float:
    """``H(Y | X)`` in nats: the lowest expected NLL any model of p(y | x) can reach.

    ``H(Y | X) = H(Y) + H(X | Y) - H(X)`` with ``H(Y) = log 21`` (uniform), ``H(X | Y) =
    0.5 log(2 pi e s^2)`` (Gaussian noise, whatever y) and ``H(X) = -int p(x) log p(x) dx`` by the
    trapezoid rule over x. For unit-variance noise this gives 1.2880 nats.
    """
    half = 7.0 + 5.25 + 0.5 + 10 * noise_std  # |f(y)| <= 12.25 (plus margin); 10 s covers the tails
    xg = np.linspace(-half - 2, half + 2, x_grid)
    log_px = inverse_sine_log_px(xg, noise_std, grid)
    px = np.exp(log_px)
    h_x = -np.trapezoid(np.where(px > 0, px * log_px, 0.0), xg)
    h_y = math.log(Y_HIGH - Y_LOW)
    h_x_given_y = 0.5 * math.log(2 * math.pi * math.e * noise_std**2)
    return float(h_y + h_x_given_y - h_x)


def two_moons(
    n: int, noise_std: float = 0.1, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``n`` points ``(n, 2)`` of two interleaved half circles plus Gaussian noise (as
    scikit-learn's)."""
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")
    moon = torch.rand(n, generator=generator) < 0.5
    angle = math.pi * torch.rand(n, generator=generator)
    upper = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    lower = torch.stack([1 - torch.cos(angle), 0.5 - torch.sin(angle)], dim=1)
    pts = torch.where(moon[:, None], upper, lower)
    return pts + noise_std * torch.randn(n, 2, generator=generator)
