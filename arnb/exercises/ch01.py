"""Self-checks for the exercises of chapter 1.

Each ``check_*`` function runs the reader's function on a few cases with known answers and
prints what is right or wrong. It returns True when everything is right and never raises on a
wrong answer (only on an answer that is not even a function), so a notebook cell keeps going.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..enumeration import enumerate_log_probs
from ..models.fvsbn import FVSBN, random_order
from ..testing import sampler_p_value
from . import call, checker, report, require_callable


def _reference_log_prob(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.distributions.Bernoulli(logits=logits.double()).log_prob(x.double()).sum(-1)


@checker
def check_chain_rule(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> bool:
    """Exercise: ``fn(logits (B, D), x (B, D) in {0,1}) -> (B,)`` = sum_d log p(x_d | x_<d).

    ``logits[:, d]`` is the logit of ``p(x_d = 1 | x_<d)``. Also checks large logits, where
    ``log(sigmoid(l))`` computed naively gives ``-inf``.
    """
    if not callable(fn):
        raise TypeError("pass your function itself, e.g. check_chain_rule(log_prob_from_logits)")
    g = torch.Generator().manual_seed(0)
    problems = []
    cases = {
        "random logits": (
            torch.randn(8, 6, generator=g) * 2,
            torch.randint(0, 2, (8, 6), generator=g),
        ),
        "one dimension": (torch.randn(5, 1, generator=g), torch.randint(0, 2, (5, 1), generator=g)),
        "large logits (numerical stability)": (
            torch.tensor([[200.0, -200.0, 30.0], [-150.0, 150.0, -30.0]]),
            torch.tensor([[0, 1, 0], [0, 1, 1]]),
        ),
    }
    for name, (logits, x) in cases.items():
        want = _reference_log_prob(logits, x)
        got, err = call(fn, logits.clone(), x.clone())
        if err:
            problems.append(f"{name}: {err}")
            continue
        got = torch.as_tensor(got)
        if got.shape != want.shape:
            problems.append(
                f"{name}: expected shape {tuple(want.shape)} (one number per row), "
                f"got {tuple(got.shape)}"
            )
        elif not torch.isfinite(got).all():
            problems.append(
                f"{name}: got non-finite values {got.tolist()}; use logsigmoid or "
                "binary_cross_entropy_with_logits instead of log(sigmoid(.))"
            )
        elif not torch.allclose(got.double(), want, rtol=1e-4, atol=1e-4):
            problems.append(
                f"{name}: expected {[round(v, 4) for v in want.tolist()]}, got "
                f"{[round(v, 4) for v in got.double().tolist()]}"
            )
    return report("chain rule", problems)


@checker
def check_bits_per_dim(fn: Callable[[float, int], float]) -> bool:
    """Exercise: ``fn(nll_nats_per_example, dims) -> bits per dimension``."""
    if not callable(fn):
        raise TypeError("pass your function itself, e.g. check_bits_per_dim(to_bits_per_dim)")
    problems = []
    for nll, d in [(math.log(2) * 16, 16), (88.0, 784), (4.8, 16), (1.0, 1)]:
        want = nll / (d * math.log(2))
        got, err = call(fn, nll, d)
        if err:
            problems.append(f"nll={nll:.4f} nats, D={d}: {err}")
        elif not math.isclose(float(got), want, rel_tol=1e-6):
            hint = ""
            if math.isclose(float(got), nll / d, rel_tol=1e-6):
                hint = " (that is nats per dimension: divide by ln 2 too)"
            elif math.isclose(float(got), nll / math.log(2), rel_tol=1e-6):
                hint = " (that is bits per example: divide by D too)"
            elif math.isclose(float(got), nll / (d * math.log(10)), rel_tol=1e-6):
                hint = " (that used log base 10: a bit is log base 2)"
            problems.append(
                f"nll={nll:.4f} nats, D={d}: expected {want:.6f}, got {float(got):.6f}{hint}"
            )
    return report("bits per dimension", problems)


def _expected_mask(din: torch.Tensor, dout: torch.Tensor, strict: bool) -> torch.Tensor:
    """The rule entry by entry (the checker's own slow version)."""
    rows = [[float(o > i if strict else o >= i) for i in din.tolist()] for o in dout.tolist()]
    return torch.tensor(rows).reshape(len(dout), len(din))


@checker
def check_made_mask(fn: Callable[[torch.Tensor, torch.Tensor, bool], torch.Tensor]) -> bool:
    """Exercise: ``fn(in_degrees (I,), out_degrees (O,), output_layer) -> mask (O, I)`` of 0/1.

    For a hidden layer a unit of degree m may see units of degree <= m below it; an output of
    degree r (its dimension's step in the order, from 1) may only see degrees < r.
    """
    if not callable(fn):
        raise TypeError("pass your function itself, e.g. check_made_mask(made_mask)")
    g = torch.Generator().manual_seed(0)
    problems = []
    rank = random_order(5, 3).argsort() + 1
    cases = [
        (
            "input -> hidden, natural order",
            torch.arange(1, 5),
            torch.tensor([1, 2, 3, 3, 1, 2]),
            False,
        ),
        ("input -> hidden, shuffled order", rank, torch.randint(1, 5, (7,), generator=g), False),
        ("hidden -> hidden", torch.tensor([1, 3, 2, 2]), torch.tensor([2, 1, 3]), False),
        (
            "hidden -> output, natural order",
            torch.tensor([1, 2, 3, 3, 1]),
            torch.arange(1, 5),
            True,
        ),
        ("hidden -> output, shuffled order", torch.randint(1, 5, (6,), generator=g), rank, True),
    ]
    for name, din, dout, is_out in cases:
        want = _expected_mask(din, dout, is_out)
        got, err = call(fn, din.clone(), dout.clone(), is_out)
        if err:
            problems.append(f"{name}: {err}")
            continue
        got = torch.as_tensor(got)
        if tuple(got.shape) != tuple(want.shape):
            hint = (
                " (rows are outputs, columns inputs: (O, I), like nn.Linear.weight)"
                if got.shape == want.T.shape
                else ""
            )
            problems.append(
                f"{name}: expected shape {tuple(want.shape)}, got {tuple(got.shape)}{hint}"
            )
        elif not torch.equal(got.float(), want):
            strict = _expected_mask(din, dout, not is_out)
            hint = ""
            if torch.equal(got.float(), strict):
                hint = " (check > versus >=: only the output layer is strict)"
            problems.append(f"{name}: {int((got.float() != want).sum())} entries differ{hint}")
    return report("MADE mask", problems)


@checker
def check_ancestral_sampler(fn: Callable, num_samples: int = 20000, alpha: float = 1e-3) -> bool:
    """Exercise: ``fn(model, n, generator) -> (n, D)`` samples, drawn one dimension at a time.

    The reader's sampler may use ``model.order``, ``model.dims`` and
    ``model.conditional_logit(x, k)``. It is run on a small FVSBN with random weights and a
    shuffled order; a chi-square test against the exact probabilities (false-alarm rate
    ``alpha``, fixed seed) decides.
    """
    if not callable(fn):
        raise TypeError("pass your function itself, e.g. check_ancestral_sampler(my_sampler)")
    torch.manual_seed(0)
    model = FVSBN(4, order=random_order(4, 1))
    with torch.no_grad():
        model.weight.normal_(0, 2.0)
        model.bias.normal_(0, 1.0)
    problems = []
    got, err = call(fn, model, num_samples, torch.Generator().manual_seed(0))
    if err:
        problems.append(err)
    else:
        got = torch.as_tensor(got)
        if tuple(got.shape) != (num_samples, 4):
            problems.append(f"expected shape ({num_samples}, 4), got {tuple(got.shape)}")
        elif got.dtype.is_floating_point or not bool(((got == 0) | (got == 1)).all()):
            problems.append("samples must be integers 0 or 1")
        else:
            configs, logp = enumerate_log_probs(model.log_prob, 4)
            p = sampler_p_value(got.long(), logp, configs)
            if p <= alpha:
                problems.append(
                    f"the samples do not follow the model (chi-square p = {p:.1e}); "
                    "does each draw use the dimensions drawn before it, in model.order?"
                )
    return report("ancestral sampler", problems)


def _fit_problem(dims: int = 6, n: int = 400, batch: int = 50, steps: int = 40):
    """Data from a random FVSBN (so pixels interact), a fixed list of minibatches."""
    torch.manual_seed(0)
    truth = FVSBN(dims)
    with torch.no_grad():
        truth.weight.normal_(0, 2.0)
        truth.bias.normal_(0, 1.0)
    data = truth.sample(n, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(2)
    batches = [data[torch.randint(0, n, (batch,), generator=g)] for _ in range(steps)]
    return data, batches


def _mean_nll(model: FVSBN, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float(-model.log_prob(x).double().mean())


@checker
def check_fit_by_gradient(fn: Callable, lr: float = 0.5) -> bool:
    """Exercise: ``fn(model, batches, lr) -> losses``: plain gradient descent on the mean NLL of
    an FVSBN (natural order) with the closed-form gradient, one step per batch, no autograd.

    ``losses[t]`` is the mean NLL (nats per image) of batch t *before* step t. The checker runs
    ``fn`` under ``torch.no_grad()`` on a tiny FVSBN, checks the first loss, that training
    lowers the NLL of the data, and that the NLL reached equals the one of a reference run
    (autograd gradients, the same steps, :func:`arnb.train.train` with plain SGD).
    """
    require_callable(fn, "check_fit_by_gradient(fit_by_gradient)")
    from ..train import Schedule, train

    data, batches = _fit_problem()
    dims = data.shape[1]
    model = FVSBN(dims)
    start = _mean_nll(model, data)
    first = _mean_nll(model, batches[0])
    reference = FVSBN(dims)
    train(
        reference,
        lambda m, x: -m.log_prob(x).mean(),
        batches,
        Schedule(steps=len(batches), lr=lr, grad_clip=None, min_lr_ratio=1.0),
        optimizer=torch.optim.SGD(reference.parameters(), lr=lr),
        progress=False,
    )
    want = _mean_nll(reference, data)
    problems = []
    with torch.no_grad():
        losses, err = call(fn, model, [b.clone() for b in batches], lr)
    if err:
        hint = ""
        if "grad" in err:
            hint = " (autograd is off here: compute the gradient by its closed form)"
        return report("training loop", [f"{err}{hint}"])
    try:
        losses = [float(v) for v in losses]
    except (TypeError, ValueError):
        return report("training loop", ["return the list of losses, one number per step"])
    got = _mean_nll(model, data)
    if len(losses) != len(batches):
        problems.append(f"expected {len(batches)} losses (one per batch), got {len(losses)}")
    elif not math.isclose(losses[0], first, rel_tol=1e-4, abs_tol=1e-4):
        problems.append(
            f"first loss: expected {first:.4f} nats (the mean NLL of batch 0 before any step), "
            f"got {losses[0]:.4f}"
        )
    if not math.isfinite(got) or got >= start:
        problems.append(
            f"the NLL of the data did not go down: {start:.4f} nats at the start, {got:.4f} "
            "after training (check the sign of the update, and that the gradient is a mean "
            "over the batch)"
        )
    elif abs(got - want) > 1e-3:
        problems.append(
            f"NLL reached: expected {want:.4f} nats (reference run), got {got:.4f} "
            "(check the gradient of W: rows are the predicted pixel, columns its inputs)"
        )
    return report("training loop", problems)


__all__ = [
    "check_ancestral_sampler",
    "check_bits_per_dim",
    "check_chain_rule",
    "check_fit_by_gradient",
    "check_made_mask",
]
