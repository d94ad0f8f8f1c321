"""Self-checks for the exercises of chapter 3 (continuous conditionals and the AIQN).

See :mod:`arnb.exercises` for what every ``check_*`` function does.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import distributions as D
from torch import nn

from ..distributions import pinball_loss
from . import call, checker, report, require_callable


def _reference_mdn_nll(out: torch.Tensor, y: torch.Tensor, min_scale: float) -> torch.Tensor:
    logits, means, raw = out.chunk(3, dim=-1)
    scales = F.softplus(raw) + min_scale
    mixture = D.MixtureSameFamily(D.Categorical(logits=logits), D.Normal(means, scales))
    return -mixture.log_prob(y).mean()


@checker
def check_mdn_nll(fn: Callable) -> bool:
    """Exercise: ``fn(out (B, 3K), y (B,), min_scale) -> ()``, the MDN's training loss: the
    mean negative log density in nats of ``y`` under the mixture that the raw network output
    ``out`` describes (logits, means and raw scales side by side, as ``out.chunk(3, -1)``
    splits them; scales ``softplus(raw) + min_scale``).

    Checked against ``torch.distributions`` on ordinary values, on logits shifted by a
    constant, far in the tails where every component's density underflows, and on raw scales
    so negative that only the floor keeps the scale positive; the gradient must be finite.
    """
    require_callable(fn, "check_mdn_nll(mdn_nll)")
    g = torch.Generator().manual_seed(0)
    b, k = 6, 3

    def output(logit_shift=0.0, raw_scale=None):
        out = torch.randn(b, 3 * k, generator=g, dtype=torch.float64)
        out[:, :k] += logit_shift
        out[:, k : 2 * k] *= 3
        if raw_scale is not None:
            out[:, 2 * k :] = raw_scale
        return out

    far = torch.tensor([60.0, -80.0, 1e3, 30.0, -45.0, 200.0], dtype=torch.float64)
    cases = {
        "ordinary values": (output(), torch.randn(b, generator=g, dtype=torch.float64), 1e-3),
        "logits shifted by a constant (weights must not change)": (
            output(logit_shift=7.0),
            torch.randn(b, generator=g, dtype=torch.float64),
            1e-3,
        ),
        "far tails (log space needed)": (output(), far, 1e-3),
        "raw scales of -40 (only the floor 0.05 keeps the scale positive)": (
            output(raw_scale=-40.0),
            torch.randn(b, generator=g, dtype=torch.float64),
            0.05,
        ),
    }
    problems = []
    for name, (out, y, floor) in cases.items():
        want = float(_reference_mdn_nll(out, y, floor))
        leaf = out.clone().requires_grad_(True)
        loss, err = call(fn, leaf, y.clone(), floor, tensor=True)
        if err:
            problems.append(f"{name}: {err}")
            continue
        if loss.dim() != 0:
            problems.append(
                f"{name}: expected one number (the mean over the batch), got shape "
                f"{tuple(loss.shape)}"
            )
            continue
        got = float(loss.detach())
        if not math.isfinite(got):
            problems.append(
                f"{name}: got {got} where the answer is {want:.6g}; form log w_k + log N_k "
                "first, then logsumexp over k"
            )
            continue
        if abs(got - want) > 1e-6 * max(1.0, abs(want)):
            problems.append(f"{name}: got {got:.6g}, expected {want:.6g}")
            continue
        try:
            (grad,) = torch.autograd.grad(loss, leaf)
        except Exception as e:  # noqa: BLE001 - the reader's graph, any failure is a finding
            problems.append(f"{name}: no gradient reaches the network output ({e})")
            continue
        if not torch.isfinite(grad).all():
            problems.append(f"{name}: the gradient holds NaN or inf")
    return report("MDN loss", problems, len(cases))


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
    """Exercise: ``fn(logits (B, K), low, high, y (B,)) -> (B,)``: the log *density* of ``y``
    under a categorical over K equal bins of ``[low, high]`` with a flat density inside each
    bin."""
    require_callable(fn, "check_binned_log_density(binned_log_density)")
    g = torch.Generator().manual_seed(1)
    problems = []
    logits = torch.randn(4, 8, generator=g)
    y = torch.tensor([-1.6, 0.1, 1.24, 2.0])  # -1.6 lies in the upper part of bin 0
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


# ----------------------------------------------------------------------------- the AIQN


def _tiny_aiqn(dims: int, seed: int) -> nn.Module:
    """A small AIQN with spread-out weights, so that a wrong answer shows."""
    from ..models.aiqn import AIQN, AIQNConfig

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = AIQN(AIQNConfig(dims=dims, hidden=8, depth=1, n_cos=4))
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(2.0)
    return model.eval()


def _first_wrong(got: torch.Tensor, want: torch.Tensor, atol: float = 1e-5) -> str | None:
    """Where ``got (n, D)`` first differs from ``want``: "coordinate d of row i: ..."."""
    if tuple(got.shape) != tuple(want.shape):
        return f"expected shape {tuple(want.shape)}, got {tuple(got.shape)}"
    bad = ((got - want).abs() > atol).nonzero()
    if len(bad) == 0:
        return None
    i, d = (int(v) for v in bad[0])
    return (
        f"coordinate {d + 1} of sample {i}: got {float(got[i, d]):.5f}, "
        f"expected {float(want[i, d]):.5f}"
    )


@checker
def check_aiqn_sample(fn: Callable) -> bool:
    """Exercise: ``fn(conditionals, n, prompt=None, generator=None) -> (n, D)``: ancestral
    inverse-CDF sampling from an AIQN whose coordinate d has the quantile network
    ``conditionals[d](context (n, d), tau (n, 1)) -> (n, 1)``.

    Coordinates are drawn in order, each with its own ``tau = torch.rand(n, 1,
    generator=generator)``; the C coordinates of ``prompt (n, C)`` are kept and draw no tau.
    Checked against ``arnb.models.AIQN.sample`` with the same seed, with and without a
    prompt, for D = 2 and 3.
    """
    require_callable(fn, "check_aiqn_sample(aiqn_sample)")
    problems = []
    cases = [
        ("D = 2, no prompt", 2, None),
        ("D = 3, no prompt", 3, None),
        ("D = 3, prompt of the first coordinate", 3, torch.tensor([[0.5], [-1.0], [2.0]])),
        ("D = 3, prompt of two coordinates", 3, torch.tensor([[0.5, 0.1]] * 3)),
    ]
    for name, dims, prompt in cases:
        model = _tiny_aiqn(dims, seed=dims)
        n = 3 if prompt is not None else 6
        want = model.sample(n, prompt=prompt, generator=torch.Generator().manual_seed(1))
        state = torch.get_rng_state()
        with torch.no_grad():
            got, err = call(
                fn,
                list(model.conditionals),
                n,
                None if prompt is None else prompt.clone(),
                torch.Generator().manual_seed(1),
                tensor=True,
            )
        if err:
            problems.append(f"{name}: {err}")
            continue
        if not torch.equal(torch.get_rng_state(), state):
            problems.append(f"{name}: drew from the global RNG; pass generator= to torch.rand")
        if prompt is not None and got.shape == want.shape:
            c = prompt.shape[1]
            if not torch.equal(got[:, :c], prompt):
                problems.append(f"{name}: the prompt's coordinates changed")
                continue
        wrong = _first_wrong(got.detach(), want)
        if wrong:
            problems.append(f"{name}: {wrong}")
    return report("AIQN sampler", problems, len(cases))


@checker
def check_aiqn_loss(fn: Callable) -> bool:
    """Exercise: ``fn(conditionals, x (B, D), tau (B, D, N)) -> ()``: the AIQN's training loss,
    the pinball loss of ``Q_d(tau[:, d] | x[:, :d])`` against ``x[:, d]`` averaged over the N
    levels, the D coordinates and the B examples (``conditionals[d](context (B, d),
    tau (B, N)) -> (B, N)``).

    Checked against ``arnb.models.AIQN`` (its teacher-forced quantiles and the pinball loss)
    for D = 2 and 3, and its gradient must reach the first coordinate's network.
    """
    require_callable(fn, "check_aiqn_loss(aiqn_loss)")
    problems = []
    cases = [("D = 2, N = 4", 2, 4), ("D = 3, N = 1", 3, 1), ("D = 3, N = 5", 3, 5)]
    for name, dims, levels in cases:
        model = _tiny_aiqn(dims, seed=10 + dims)
        g = torch.Generator().manual_seed(dims + levels)
        x = torch.randn(7, dims, generator=g)
        tau = torch.rand(7, dims, levels, generator=g)
        with torch.no_grad():
            q = model(x, tau)
            want = float(pinball_loss(q, x.unsqueeze(-1).expand_as(q), tau).mean())
        model.zero_grad()
        loss, err = call(fn, list(model.conditionals), x.clone(), tau.clone(), tensor=True)
        if err:
            problems.append(f"{name}: {err}")
            continue
        if loss.dim() != 0:
            problems.append(f"{name}: expected one number, got shape {tuple(loss.shape)}")
            continue
        got = float(loss.detach())
        if not abs(got - want) <= 1e-5 * max(1.0, abs(want)):
            problems.append(f"{name}: got {got:.6f}, expected {want:.6f}")
            continue
        try:
            loss.backward()
        except Exception as e:  # noqa: BLE001 - the reader's graph, any failure is a finding
            problems.append(f"{name}: backward failed ({e})")
            continue
        first = model.conditionals[0].features.grad
        if first is None or not bool((first != 0).any()):
            problems.append(f"{name}: no gradient reaches the first coordinate's network")
    return report("AIQN loss", problems, len(cases))
