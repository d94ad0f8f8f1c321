"""Self-checks for the exercises of chapter 4 (RNN-MDN).

Each checker runs the reader's function on a few cases, compares it with an independent answer
(``torch.distributions``, the library's :class:`~arnb.distributions.StrokeMixture` in float64, or
exact probabilities of the mixture), prints what is right or wrong, and returns ``True`` when
everything is right. An exception inside the reader's function is reported as a failed case,
not raised, so a notebook cell keeps going.
"""

from __future__ import annotations

import math

import torch

from ..distributions import StrokeMixture
from . import call, call_shaped, checker, report, require_callable


@checker
def check_bivariate_log_prob(fn) -> bool:
    """Check ``fn(xy, mu, sigma, rho) -> log N(xy | mu, Sigma)``.

    Shapes: ``xy (N, 2)``, ``mu (N, 2)``, ``sigma (N, 2)`` standard deviations, ``rho (N,)``;
    returns ``(N,)``. Cases: an ordinary point, a far tail, a tiny sigma, |rho| near 1, and a
    batch of three rows with their own parameters (a sum over the whole batch shows there).
    """
    require_callable(fn, "check_bivariate_log_prob(whitened_log_prob)")
    one = {
        "ordinary point": ([0.5, -1.0], [0.0, 0.0], [1.0, 2.0], 0.3),
        "negative correlation": ([1.0, 1.0], [0.2, -0.4], [0.7, 0.5], -0.6),
        "far tail": ([300.0, -200.0], [0.0, 1.0], [1.0, 1.0], 0.1),
        "tiny sigma": ([1e-3, 0.0], [0.0, 0.0], [1e-3, 1e-3], 0.0),
        "|rho| near 1": ([0.1, 0.1], [0.0, 0.0], [1.0, 1.0], 0.9999),
    }
    cases = {name: tuple([v] for v in row) for name, row in one.items()}
    cases["a batch of 3 rows, each with its own parameters"] = (
        [[0.5, -1.0], [300.0, -200.0], [2.0, 0.5]],  # xy
        [[0.0, 0.0], [0.0, 1.0], [1.5, 0.0]],  # mu
        [[1.0, 2.0], [1.0, 1.0], [0.3, 4.0]],  # sigma
        [0.3, 0.1, 0.8],  # rho
    )
    failures = []
    for name, (xy, mu, sigma, rho) in cases.items():
        xy_t, mu_t, s_t, rho_t = (
            torch.tensor(v, dtype=torch.float64) for v in (xy, mu, sigma, rho)
        )
        cov = torch.diag_embed(s_t**2)
        cov[:, 0, 1] = cov[:, 1, 0] = rho_t * s_t[:, 0] * s_t[:, 1]
        want = torch.distributions.MultivariateNormal(mu_t, cov).log_prob(xy_t)
        got, err = call_shaped(fn, xy_t, mu_t, s_t, rho_t, shape=(len(rho),))
        if err:
            failures.append(f"{name}: {err} (one value per row of xy)")
            continue
        got = got.double()
        if not torch.isfinite(got).all():
            failures.append(f"{name}: got {_show(got)}, expected {_show(want)} (work in log space)")
        elif not torch.allclose(got, want, rtol=1e-6, atol=1e-6):
            failures.append(f"{name}: got {_show(got)}, expected {_show(want)}")
    return report("bivariate normal log density", failures, len(cases))


def _show(t: torch.Tensor) -> str:
    """A tensor of one or a few values as plain numbers: ``-3.91`` or ``[-3.91, -3.68]``."""
    values = [f"{v:.6g}" for v in t.tolist()]
    return values[0] if len(values) == 1 else "[" + ", ".join(values) + "]"


def _masked_nll_cases() -> dict[str, tuple]:
    """``name -> (raw (B, T, 6M+1), x (B, T, 3), mask (B, T), M)``, float64."""
    g = torch.Generator().manual_seed(4)
    m, b, t = 3, 4, 6
    lengths = torch.tensor([6, 4, 1, 3])
    mask = torch.arange(t)[None] < lengths[:, None]

    def draw():
        raw = torch.randn(b, t, 6 * m + 1, generator=g, dtype=torch.float64)
        x = torch.randn(b, t, 3, generator=g, dtype=torch.float64)
        x[..., 2] = (torch.rand(b, t, generator=g) < 0.3).double()
        return raw, x

    cases = {}
    raw, x = draw()
    cases["ordinary batch, no padding"] = (raw, x, torch.ones(b, t, dtype=torch.bool), m)
    raw, x = draw()
    x[~mask] = 0.0
    cases["sequences of lengths 6, 4, 1, 3, zeros in the padding"] = (raw, x, mask, m)
    raw, x = draw()
    x[~mask] = float("nan")  # padding may hold anything
    x[1, 5] = 1e30
    cases["NaN and 1e30 in the padding"] = (raw, x, mask, m)
    return cases


def _head_log_prob(raw: torch.Tensor, components: int):
    """The conditional of a mixture head with outputs ``raw``: ``x (B, T, 3) -> (B, T)``."""
    return lambda x: StrokeMixture.from_raw(raw, components).log_prob(x)


@checker
def check_masked_nll(fn) -> bool:
    """Check ``fn(log_prob, x, mask) -> mean NLL per real point`` (a 0-d tensor, nats).

    ``log_prob`` maps points ``x (B, T, 3)`` to ``log p(x_t | x_<t)`` of shape ``(B, T)`` (a
    mixture head with fixed outputs ``raw``); ``mask (B, T)`` is True on the real points. The
    value and its gradient with respect to ``raw`` are compared with the library's masked loss in
    float64, on batches padded with zeros, with NaN and with 1e30: the padding may change
    neither.
    """
    require_callable(fn, "check_masked_nll(masked_nll)")
    cases = _masked_nll_cases()
    failures = []
    for name, (raw, x, mask, m) in cases.items():
        want_raw = raw.clone().requires_grad_()
        clean = torch.where(mask[..., None], x, torch.zeros((), dtype=x.dtype))
        lp = _head_log_prob(want_raw, m)(clean)
        want_loss = -(lp[mask]).sum() / mask.sum()
        want_loss.backward()
        want = float(want_loss.detach())
        got_raw = raw.clone().requires_grad_()
        got, err = call(fn, _head_log_prob(got_raw, m), x.clone(), mask.clone())
        if err:
            failures.append(f"{name}: {err}")
            continue
        try:
            value_t = torch.as_tensor(got.detach() if isinstance(got, torch.Tensor) else got)
        except (TypeError, ValueError, RuntimeError):
            failures.append(f"{name}: expected a number (the mean), got {type(got).__name__}")
            continue
        if value_t.numel() != 1:
            shape = tuple(value_t.shape)
            failures.append(f"{name}: expected one number (the mean), got shape {shape}")
            continue
        value = float(value_t)
        if not math.isfinite(value):
            hint = " (NaN * 0 is NaN: select with torch.where)" if "NaN" in name else ""
            failures.append(f"{name}: got {value}, expected {want:.6g}{hint}")
            continue
        if abs(value - want) > 1e-6 * max(1.0, abs(want)):
            failures.append(f"{name}: got {value:.6g}, expected {want:.6g}")
            continue
        if not (isinstance(got, torch.Tensor) and got.requires_grad):
            failures.append(
                f"{name}: the loss carries no gradient (return the tensor, not .item() or float)"
            )
            continue
        try:
            got.backward()
        except RuntimeError as e:
            failures.append(f"{name}: backward() raised {e}")
            continue
        grad = got_raw.grad
        if grad is None or not bool(torch.isfinite(grad).all()):
            failures.append(
                f"{name}: the value is right but the gradient holds NaN: torch.where sends a zero "
                "gradient to the padding's log p, and zero times the NaN inside it is NaN; "
                "replace the padding in x before calling log_prob"
            )
        elif not torch.allclose(grad, want_raw.grad, rtol=1e-6, atol=1e-9):
            err = float((grad - want_raw.grad).abs().max())
            failures.append(f"{name}: the gradient differs from the library's by up to {err:.3g}")
    return report("masked NLL of a padded batch", failures, len(cases))


@checker
def check_bias_sigma(fn) -> bool:
    """Check ``fn(logit_pi, sigma, bias) -> (new_logit_pi, new_sigma)`` implements Graves' bias.

    Graves (2013, eqs. 61-62): weights ``softmax((1 + b) * logits)``, deviations
    ``sigma * exp(-b)``. Compared as probabilities, so any logits that give the same weights are
    accepted.
    """
    require_callable(fn, "check_bias_sigma(bias_adjust)")
    logit_pi = torch.tensor([[0.5, -0.2, 1.0]])
    sigma = torch.tensor([[[1.0, 0.5], [2.0, 0.1], [0.3, 0.3]]])
    failures = []
    biases = (0.0, 0.5, 2.0)
    for b in biases:
        out, err = call(fn, logit_pi.clone(), sigma.clone(), b)
        if err:
            failures.append(f"bias {b}: {err}")
            continue
        try:
            lp, s = out
        except (TypeError, ValueError):
            failures.append(f"bias {b}: return a pair (new_logit_pi, new_sigma)")
            continue
        want_p = torch.softmax((1 + b) * logit_pi, -1)
        got_p = torch.softmax(torch.as_tensor(lp).float(), -1)
        if got_p.shape != want_p.shape or not torch.allclose(got_p, want_p, atol=1e-5):
            failures.append(
                f"bias {b}: weights {[round(v, 4) for v in got_p.flatten().tolist()]}, "
                f"expected {[round(v, 4) for v in want_p.flatten().tolist()]}"
            )
        s = torch.as_tensor(s).float()
        if s.shape != sigma.shape or not torch.allclose(s, sigma * math.exp(-b), atol=1e-6):
            failures.append(
                f"bias {b}: sigmas {s.flatten()[:3].tolist()}..., expected "
                f"{(sigma * math.exp(-b)).flatten()[:3].tolist()}..."
            )
    return report("sampling bias", failures, len(biases))


# The mixture the sampler is tested on: three components, one strongly correlated.
_SAMPLER_MIXTURE = {
    "logit_pi": [0.3, -0.5, 0.8],
    "mu": [[0.0, 0.0], [2.0, 1.0], [-1.0, 2.0]],
    "sigma": [[0.5, 1.0], [0.3, 0.3], [1.0, 0.4]],
    "rho": [0.8, -0.5, 0.0],
}
_HALF_PLANES = (
    [((1.0, 0.0), c) for c in (-0.5, 0.5, 1.5)]
    + [((0.0, 1.0), c) for c in (-0.5, 0.5, 1.5)]
    + [((1.0, 1.0), c) for c in (0.5, 2.0)]
    + [((1.0, -1.0), c) for c in (-2.0, 0.3, 1.0)]
)


def _half_plane_prob(w, mu, sigma, rho, a, c) -> float:
    """Exact ``P(a . X <= c)`` under the mixture (each ``a . X`` is a 1-D Gaussian)."""
    ax, ay = a
    mean = ax * mu[:, 0] + ay * mu[:, 1]
    var = (ax * sigma[:, 0]) ** 2 + (ay * sigma[:, 1]) ** 2 + 2 * ax * ay * rho * sigma.prod(-1)
    z = (c - mean) / var.sqrt()
    return float((w * 0.5 * (1 + torch.erf(z / math.sqrt(2)))).sum())


@checker
def check_bias_sampler(fn, n: int = 40_000, z_max: float = 5.0) -> bool:
    """Check ``fn(logit_pi, mu, sigma, rho, bias, n, generator) -> moves (n, 2)``.

    One mixture: ``logit_pi (M,)``, ``mu (M, 2)``, ``sigma (M, 2)``, ``rho (M,)``. At biases 0 and
    1.5 the ``n`` draws are compared with the exact biased mixture: the mean of each
    coordinate and the probabilities of eleven half-planes ``a . (dx, dy) <= c``, each by a z-score
    (|z| > ``z_max`` fails; a correct sampler fails one of these about once in 10^5 runs, and
    the seed is fixed). The same seed must give the same draws.
    """
    require_callable(fn, "check_bias_sampler(sample_moves)")
    p = {k: torch.tensor(v, dtype=torch.float64) for k, v in _SAMPLER_MIXTURE.items()}
    failures = []
    biases = (0.0, 1.5)
    for b in biases:
        args = (p["logit_pi"].clone(), p["mu"].clone(), p["sigma"].clone(), p["rho"].clone())
        out, err = call(fn, *args, b, n, torch.Generator().manual_seed(1))
        if err:
            failures.append(f"bias {b}: {err}")
            continue
        moves = torch.as_tensor(out).double()
        if moves.shape != (n, 2):
            failures.append(f"bias {b}: expected shape ({n}, 2), got {tuple(moves.shape)}")
            continue
        if not bool(torch.isfinite(moves).all()):
            failures.append(f"bias {b}: the draws hold NaN or inf")
            continue
        again, _ = call(fn, *args, b, n, torch.Generator().manual_seed(1))
        if again is None or not torch.equal(torch.as_tensor(again).double(), moves):
            failures.append(
                f"bias {b}: the same generator seed gave different draws "
                "(take every random number from `generator`)"
            )
        w = torch.softmax((1 + b) * p["logit_pi"], -1)
        sigma = p["sigma"] * math.exp(-b)
        mean = (w[:, None] * p["mu"]).sum(0)
        var = (w[:, None] * (sigma**2 + p["mu"] ** 2)).sum(0) - mean**2
        for i, name in enumerate(("dx", "dy")):
            z = float((moves[:, i].mean() - mean[i]) / (var[i] / n).sqrt())
            if abs(z) > z_max:
                failures.append(
                    f"bias {b}: mean of {name} {float(moves[:, i].mean()):.4f}, "
                    f"exact {float(mean[i]):.4f} (z = {z:.1f})"
                )
        for a, c in _HALF_PLANES:
            want = _half_plane_prob(w, p["mu"], sigma, p["rho"], a, c)
            got = float(((a[0] * moves[:, 0] + a[1] * moves[:, 1]) <= c).double().mean())
            z = (got - want) / math.sqrt(want * (1 - want) / n)
            if abs(z) > z_max:
                failures.append(
                    f"bias {b}: P({a[0]:g} dx + {a[1]:g} dy <= {c:g}) is {got:.4f} in the "
                    f"draws, exact {want:.4f} (z = {z:.1f})"
                )
    return report("mixture sampler with bias", failures)
