"""Self-checks for the exercises of chapter 7 (imputation with any-order and masked models).

Each checker builds a small network with large random weights (so that a wrong answer gives a
visibly different distribution), runs the reader's function and compares with the exact answer
computed by enumeration. Distributions of sampled answers are compared with a chi-square test
at a fixed seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..enumeration import completions, conditional_by_completion
from ..models.any_order import AnyOrderConfig, AnyOrderNet
from ..models.fvsbn import FVSBN
from ..testing import all_configurations, sampler_p_value
from . import call, checker, report, require_callable

P_MIN = 1e-3  # chi-square level: a correct sampler fails this rarely (seeded: never here)


def _net(dims: int = 5, seed: int = 0, objective: str = "masked") -> AnyOrderNet:
    torch.manual_seed(seed)
    net = AnyOrderNet(AnyOrderConfig(dims=dims, hidden=(12, 12), objective=objective))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.8)
    return net.double().eval()


def _fvsbn(dims: int, seed: int) -> FVSBN:
    model = FVSBN(dims, order=torch.randperm(dims, generator=torch.Generator().manual_seed(seed)))
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 1.5)
    return model.double()


@checker
def check_posterior(fn: Callable) -> bool:
    """Exercise: ``fn(log_prob, dims, observed, values) -> (2^|m|,)`` probabilities of every
    completion (missing dimensions in increasing order, the first one the most significant
    bit), exactly ``p(x_m | x_o)``."""
    require_callable(fn, "check_posterior(posterior)")
    problems, cases = [], 0
    for dims, observed, values, seed in [
        (4, [1], [1], 0),
        (5, [0, 3], [1, 0], 1),
        (6, [5, 2, 0], [0, 1, 1], 2),
        (3, [0, 1, 2], [1, 1, 0], 3),
    ]:
        cases += 1
        model = _fvsbn(dims, seed)
        want = conditional_by_completion(model.log_prob, dims, observed, values)
        want = want["log_conditional"].exp()
        got, err = call(fn, model.log_prob, dims, list(observed), list(values))
        if err:
            problems.append(f"observed {observed} = {values}: {err}")
            continue
        got = torch.as_tensor(got).detach().double().flatten()
        if got.shape != want.shape:
            problems.append(
                f"observed {observed} of {dims}: expected {want.numel()} probabilities "
                f"(2^{dims - len(observed)}), got {got.numel()}"
            )
        elif abs(float(got.sum()) - 1) > 1e-6:
            problems.append(
                f"observed {observed} of {dims}: the probabilities sum to {float(got.sum()):.4f}"
            )
        elif not torch.allclose(got, want, atol=1e-6):
            problems.append(
                f"observed {observed} of {dims}: expected {[round(v, 4) for v in want.tolist()]}, "
                f"got {[round(v, 4) for v in got.tolist()]}"
            )
    return report("exact posterior", problems, cases)


@checker
def check_ensemble_log_prob(fn: Callable) -> bool:
    """Exercise: ``fn(model, x, orders) -> (B,)`` = ``log (1/K) sum_k p(x | orders[k])``."""
    require_callable(fn, "check_ensemble_log_prob(ensemble_log_prob)")
    model = _net(4, seed=3, objective="any_order")
    x = all_configurations(4, 2)
    problems, cases = [], 0
    for orders in (
        [[0, 1, 2, 3]],
        [[0, 1, 2, 3], [3, 2, 1, 0]],
        [[2, 0, 3, 1], [1, 3, 0, 2], [3, 1, 2, 0]],
    ):
        cases += 1
        with torch.no_grad():
            lps = torch.stack([model.log_prob(x, order=o) for o in orders])
            want = torch.logsumexp(lps, 0) - math.log(len(orders))
            got, err = call(fn, model, x, [list(o) for o in orders])
        if err:
            problems.append(f"{len(orders)} orders: {err}")
            continue
        got = torch.as_tensor(got).detach().double()
        if got.shape != want.shape:
            problems.append(
                f"{len(orders)} orders: expected shape {tuple(want.shape)}, got {tuple(got.shape)}"
            )
            continue
        total = float(torch.logsumexp(got, 0).exp())
        if not torch.allclose(got, want, atol=1e-6):
            problems.append(
                f"{len(orders)} orders: over all 16 images the probabilities sum to {total:.4f} "
                f"(a mixture sums to 1); first values expected "
                f"{[round(v, 4) for v in want[:3].tolist()]}, got "
                f"{[round(v, 4) for v in got[:3].tolist()]}"
            )
    return report("order ensemble", problems, cases)


def _impute_case(dims: int, observed: list[int], values: list[int], n: int):
    start = torch.zeros(n, dims, dtype=torch.long)
    start[:, observed] = torch.tensor(values)
    mask = torch.zeros(dims)
    mask[observed] = 1.0
    full, _ = completions(dims, observed, values)
    return start, mask, full


def _check_sampled(name, fn, args, start, mask, full, want_log, problems):
    got, err = call(fn, *args)
    if err:
        problems.append(f"{name}: {err}")
        return
    got = torch.as_tensor(got).detach()
    if got.shape != start.shape:
        problems.append(f"{name}: expected shape {tuple(start.shape)}, got {tuple(got.shape)}")
        return
    keep = mask.bool()
    if not torch.equal(got[:, keep].long(), start[:, keep]):
        problems.append(f"{name}: observed pixels were changed (they must be copied unchanged)")
        return
    p = sampler_p_value(got.long(), want_log, full)
    if p < P_MIN:
        problems.append(
            f"{name}: the completions do not follow the expected distribution "
            f"(chi-square p = {p:.1e} over {len(start)} imputations)"
        )


@checker
def check_impute_in_order(fn: Callable) -> bool:
    """Exercise: ``fn(model, x, observed, generator) -> (B, D)``: missing pixels drawn one at a
    time in raster order, each given the observed and the already drawn pixels."""
    require_callable(fn, "check_impute_in_order(impute_in_order)")
    model = _net(5, seed=4)
    problems, cases = [], 0
    for observed, values in ([1, 3], [1, 0]), ([4], [1]), ([0, 2], [0, 1]):
        cases += 1
        start, mask, full = _impute_case(5, observed, values, 4000)
        with torch.no_grad():
            want = model.log_prob_missing(full, mask)
        g = torch.Generator().manual_seed(cases)
        name = f"observed {observed} = {values}"
        _check_sampled(
            name, fn, (model, start.clone(), mask.clone(), g), start, mask, full, want, problems
        )
    return report("any-order imputation", problems, cases)


@checker
def check_gibbs_impute(fn: Callable) -> bool:
    """Exercise: ``fn(model, x, observed, sweeps, generator) -> (B, D)``: start from the
    independent draw, then ``sweeps`` raster sweeps, each missing pixel redrawn from
    ``p(x_j | all other pixels)``."""
    from ..chapters.ch07_any_order import gibbs_log_q

    require_callable(fn, "check_gibbs_impute(gibbs_impute)")
    model = _net(5, seed=5)
    problems, cases = [], 0
    for observed, values, sweeps in (([1, 3], [1, 0], 2), ([2], [1], 1), ([0, 4], [0, 1], 3)):
        cases += 1
        start, mask, full = _impute_case(5, observed, values, 4000)
        missing = [d for d in range(5) if d not in observed]
        want = gibbs_log_q(model, full, missing, len(missing), sweeps)[0]
        g = torch.Generator().manual_seed(10 + cases)
        name = f"observed {observed} = {values}, {sweeps} sweeps"
        _check_sampled(
            name,
            fn,
            (model, start.clone(), mask.clone(), sweeps, g),
            start,
            mask,
            full,
            want,
            problems,
        )
    return report("Gibbs imputation", problems, cases)
