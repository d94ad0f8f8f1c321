"""Self-checks for the exercises of chapter 3 (continuous conditionals).

See :mod:`arnb.exercises` for what every ``check_*`` function does.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import distributions as D

from . import call, checker, report, require_callable


@checker
def check_mixture_log_prob(fn: Callable) -> bool:
    """Exercise: ``fn(logits (B, K), means (B, K), scales (B, K), y (B,)) -> (B,)``, the log density
    of a 1-D Gaussian mixture with weights ``softmax(logits)``, in nats, computed in log space.

    Checked against ``torch.distributions`` on ordinary values, on unnormalised logits, and far
    in the tails with tiny scales, where ``log(sum(w * exp(...)))`` underflows to ``-inf``.
    """
    require_callable(fn, "check_mixture_log_prob(mixture_log_prob)")
    g = torch.Generator().manual_seed(0)
    b, k = 6, 3
    logits = torch.randn(b, k, generator=g, dtype=torch.float64)
    means = torch.randn(b, k, generator=g, dtype=torch.float64) * 2
    scales = torch.rand(b, k, generator=g, dtype=torch.float64) + 0.2
    cases = {
        "ordinary values": (
            logits,
            means,
            scales,
            torch.randn(b, generator=g, dtype=torch.float64),
        ),
        "logits shifted by a constant (weights must not change)": (
            logits + 7.0,
            means,
            scales,
            torch.randn(b, generator=g, dtype=torch.float64),
        ),
        "far tails with tiny scales (log space needed)": (
            logits,
            means,
            torch.full_like(scales, 1e-3),
            torch.tensor([50.0, -80.0, 1e3, 30.0, -30.0, 200.0], dtype=torch.float64),
        ),
    }
    problems = []
    for name, (lg, mu, sd, y) in cases.items():
        out, err = call(fn, lg.clone(), mu.clone(), sd.clone(), y.clone(), tensor=True)
        if err:
            problems.append(f"{name}: {err}")
            continue
        ref = D.MixtureSameFamily(D.Categorical(logits=lg), D.Normal(mu, sd)).log_prob(y)
        if tuple(out.shape) != (b,):
            problems.append(f"{name}: expected shape ({b},), got {tuple(out.shape)}")
            continue
        out = out.double()
        if not torch.isfinite(out).all():
            problems.append(
                f"{name}: got -inf or NaN where the answer is finite (e.g. {float(ref[0]):.4g}); "
                "form log w_k + log N_k first, then logsumexp over k"
            )
        elif not torch.allclose(out, ref, atol=1e-6, rtol=1e-9):
            i = int((out - ref).abs().argmax())
            hint = ""
            if "shifted" in name:
                hint = "; normalise the weights with log_softmax, not the raw logits"
            problems.append(
                f"{name}: row {i} gives {float(out[i]):.6g}, expected {float(ref[i]):.6g}{hint}"
            )
    return report("mixture log density", problems)


@checker
def check_pinball_loss(fn: Callable) -> bool:
    """Exercise: ``fn(pred, target, tau) -> elementwise pinball loss`` (same shape as ``pred``):
    ``tau * (target - pred)`` when ``target >= pred``, ``(1 - tau) * (pred - target)`` otherwise."""
    require_callable(fn, "check_pinball_loss(pinball)")
    problems = []
    pred = torch.tensor([0.0, 0.0, 1.0, 1.0, 2.0])
    target = torch.tensor([2.0, -2.0, 1.0, 0.5, 4.0])
    tau = torch.tensor([0.9, 0.9, 0.5, 0.2, 0.1])
    expected = torch.tensor([1.8, 0.2, 0.0, 0.4, 0.2])
    out, err = call(fn, pred, target, tau, tensor=True)
    if err:
        problems.append(err)
    elif tuple(out.shape) != tuple(pred.shape):
        problems.append(
            f"expected an elementwise loss of shape {tuple(pred.shape)}, got {tuple(out.shape)} "
            "(do not average inside)"
        )
    elif not torch.allclose(out.float(), expected, atol=1e-6):
        problems.append(
            f"on pred={pred.tolist()}, target={target.tolist()}, tau={tau.tolist()}: "
            f"got {[round(v, 4) for v in out.tolist()]}, expected {expected.tolist()}"
        )
        if torch.allclose(out.float(), torch.tensor([0.2, 1.8, 0.0, 0.1, 1.8]), atol=1e-6):
            problems.append(
                "tau and 1 - tau are swapped: under-predicting (target above pred) costs tau"
            )
    if not problems:  # its minimiser over a known sample is the quantile
        n = 2000
        y = (torch.arange(n, dtype=torch.float64) + 0.5) / n  # U(0, 1), midpoint rule
        cand = torch.linspace(0, 1, 101, dtype=torch.float64)
        losses, err = call(
            lambda: torch.stack(
                [
                    fn(c.expand(n), y, torch.full((n,), 0.7, dtype=torch.float64)).mean()
                    for c in cand
                ]
            ),
            tensor=True,
        )
        if err:
            problems.append(f"on float64 inputs: {err}")
        elif abs(float(cand[losses.argmin()]) - 0.7) > 0.011:
            problems.append(
                f"the loss on U(0,1) is minimised at {float(cand[losses.argmin()]):.2f}, "
                "not at the 0.7-quantile 0.70"
            )
    return report("pinball loss", problems)


@checker
def check_binned_log_density(fn: Callable) -> bool:
    """Exercise: ``fn(logits (B, K), low, high, y (B,)) -> (B,)``: the log *density* of ``y`` under a
    categorical over K equal bins of ``[low, high]`` with a flat density inside each bin."""
    require_callable(fn, "check_binned_log_density(binned_log_density)")
    g = torch.Generator().manual_seed(1)
    problems = []
    logits = torch.randn(4, 8, generator=g)
    y = torch.tensor([-1.9, 0.1, 1.24, 2.0])
    low, high = -2.0, 2.0
    width = (high - low) / 8
    k = torch.tensor([0, 4, 6, 7])
    expected = torch.log_softmax(logits, -1).gather(1, k[:, None]).squeeze(1) - math.log(width)
    out, err = call(fn, logits, low, high, y, tensor=True)
    if err:
        problems.append(err)
    elif tuple(out.shape) != (4,):
        problems.append(f"expected shape (4,), got {tuple(out.shape)}")
    elif not torch.allclose(out.float(), expected, atol=1e-5):
        if torch.allclose(out.float(), expected + math.log(width), atol=1e-5):
            problems.append(
                "this is the log probability of the bin, not a density: subtract log(bin width)"
            )
        else:
            problems.append(
                f"got {[round(v, 4) for v in out.tolist()]}, expected "
                f"{[round(v, 4) for v in expected.tolist()]} (check the bin of each y; "
                "y = high belongs to the last bin)"
            )
    return report("binned log density", problems)
