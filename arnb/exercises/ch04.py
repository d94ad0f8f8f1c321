"""Self-checks for the exercises of chapter 4 (RNN-MDN).

Each checker runs the reader's function on a few cases, compares it with an independent answer
(``torch.distributions`` or a float64 computation), prints what is right or wrong, and returns
``True`` when everything is right. An exception inside the reader's function is reported as a
failed case, not raised, so a notebook cell keeps going.
"""

from __future__ import annotations

import math

import torch

from . import checker, report


@checker
def check_bivariate_log_prob(fn) -> bool:
    """Check ``fn(xy, mu, sigma, rho) -> log N(xy | mu, Sigma)``.

    Shapes: ``xy (N, 2)``, ``mu (N, 2)``, ``sigma (N, 2)`` standard deviations, ``rho (N,)``;
    returns ``(N,)``. Cases: an ordinary point, a far tail, a tiny sigma, and |rho| near 1.
    """
    cases = {
        "ordinary point": ([0.5, -1.0], [0.0, 0.0], [1.0, 2.0], 0.3),
        "negative correlation": ([1.0, 1.0], [0.2, -0.4], [0.7, 0.5], -0.6),
        "far tail": ([300.0, -200.0], [0.0, 1.0], [1.0, 1.0], 0.1),
        "tiny sigma": ([1e-3, 0.0], [0.0, 0.0], [1e-3, 1e-3], 0.0),
        "|rho| near 1": ([0.1, 0.1], [0.0, 0.0], [1.0, 1.0], 0.9999),
    }
    failures = []
    for name, (xy, mu, sigma, rho) in cases.items():
        xy_t, mu_t, s_t = (torch.tensor([v], dtype=torch.float64) for v in (xy, mu, sigma))
        rho_t = torch.tensor([rho], dtype=torch.float64)
        cov = torch.tensor(
            [
                [sigma[0] ** 2, rho * sigma[0] * sigma[1]],
                [rho * sigma[0] * sigma[1], sigma[1] ** 2],
            ],
            dtype=torch.float64,
        )
        want = float(torch.distributions.MultivariateNormal(mu_t[0], cov).log_prob(xy_t[0]))
        try:
            got = torch.as_tensor(fn(xy_t, mu_t, s_t, rho_t)).double().flatten()
        except Exception as err:  # noqa: BLE001 - report, do not raise, on the reader's code
            failures.append(f"{name}: raised {type(err).__name__}: {err}")
            continue
        if got.numel() != 1:
            failures.append(f"{name}: expected one value per point, got shape {tuple(got.shape)}")
        elif not math.isfinite(float(got)):
            failures.append(f"{name}: got {float(got)}, expected {want:.6g} (work in log space)")
        elif abs(float(got) - want) > 1e-6 * max(1.0, abs(want)):
            failures.append(f"{name}: got {float(got):.6g}, expected {want:.6g}")
    return report("bivariate normal log density", failures)


@checker
def check_mixture_log_prob(fn) -> bool:
    """Check ``fn(logit_pi, log_components) -> log sum_k softmax(logit_pi)_k exp(log_components_k)``.

    Shapes: ``(N, K)`` each, returns ``(N,)``. Includes log densities around -1000, where
    exponentiating first underflows to ``log 0 = -inf``.
    """
    logit_pi = torch.tensor(
        [[0.0, 0.0], [2.0, -1.0], [0.0, 5.0], [1.0, 1.0], [30.0, -30.0]], dtype=torch.float64
    )
    log_comp = torch.tensor(
        [[-1.0, -2.0], [0.5, -3.0], [-1000.0, -1001.0], [-800.0, 10.0], [-5.0, 3.0]],
        dtype=torch.float64,
    )
    names = [
        "equal weights",
        "unequal weights",
        "far tail (-1000)",
        "one component dominates",
        "extreme logits",
    ]
    want = torch.logsumexp(torch.log_softmax(logit_pi, -1) + log_comp, -1)
    failures = []
    try:
        got = torch.as_tensor(fn(logit_pi.clone(), log_comp.clone())).double().flatten()
    except Exception as err:  # noqa: BLE001
        return report("mixture log density", [f"raised {type(err).__name__}: {err}"])
    if got.shape != want.shape:
        return report(
            "mixture log density", [f"expected shape {tuple(want.shape)}, got {tuple(got.shape)}"]
        )
    for name, g, w in zip(names, got.tolist(), want.tolist()):
        if not math.isfinite(g):
            failures.append(f"{name}: got {g}, expected {w:.6g} (use log_softmax and logsumexp)")
        elif abs(g - w) > 1e-6 * max(1.0, abs(w)):
            failures.append(f"{name}: got {g:.6g}, expected {w:.6g}")
    return report("mixture log density", failures)


@checker
def check_bias_sigma(fn) -> bool:
    """Check ``fn(logit_pi, sigma, bias) -> (new_logit_pi, new_sigma)`` implements Graves' bias.

    Graves (2013, eqs. 61-62): weights ``softmax((1 + b) * logits)``, deviations ``sigma * exp(-b)``.
    Compared as probabilities, so any logits that give the same weights are accepted.
    """
    logit_pi = torch.tensor([[0.5, -0.2, 1.0]])
    sigma = torch.tensor([[[1.0, 0.5], [2.0, 0.1], [0.3, 0.3]]])
    failures = []
    for b in (0.0, 0.5, 2.0):
        try:
            lp, s = fn(logit_pi.clone(), sigma.clone(), b)
        except Exception as err:  # noqa: BLE001
            failures.append(f"bias {b}: raised {type(err).__name__}: {err}")
            continue
        want_p = torch.softmax((1 + b) * logit_pi, -1)
        if not torch.allclose(torch.softmax(torch.as_tensor(lp).float(), -1), want_p, atol=1e-5):
            failures.append(
                f"bias {b}: weights {torch.softmax(torch.as_tensor(lp).float(), -1).tolist()}, "
                f"expected {want_p.tolist()}"
            )
        if not torch.allclose(torch.as_tensor(s).float(), sigma * math.exp(-b), atol=1e-6):
            failures.append(f"bias {b}: sigmas not multiplied by exp(-{b})")
    return report("sampling bias", failures)
