"""Checks that catch a wrong autoregressive model, not just a crash.

Every model of the book goes through the same four probes:

- :func:`dependency_matrix` / :func:`assert_causal`: the conditional for dimension i must not
  depend on any dimension j that comes at or after i in the model's order (gradient probe for
  real-valued inputs, :func:`perturbation_dependency` for token inputs).
- :func:`assert_normalized`: on a tiny instance, ``sum_x p(x) = 1`` over all configurations.
- :func:`sampler_p_value` / :func:`assert_sampler_matches`: a chi-square goodness-of-fit test of
  many samples against the exact probabilities.
- :func:`assert_prompt_kept`: sampling with a prompt returns the prompt unchanged.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import torch

from .train import exact_float32


def all_configurations(dims: int, num_classes: int = 2) -> torch.Tensor:
    """Every sequence in ``{0..K-1}^D`` as a ``(K**D, D)`` long tensor, in lexicographic order."""
    if num_classes**dims > 2**22:
        raise ValueError(f"{num_classes}**{dims} configurations is too many to enumerate")
    grid = itertools.product(range(num_classes), repeat=dims)
    return torch.tensor(list(grid), dtype=torch.long).reshape(-1, dims)


@torch.no_grad()
def total_log_prob(
    log_prob: Callable[[torch.Tensor], torch.Tensor], configs: torch.Tensor, batch_size: int = 4096
) -> torch.Tensor:
    """``log sum_x p(x)`` over ``configs (N, ...)``, computed in log space in batches."""
    parts = [
        log_prob(configs[i : i + batch_size]).double() for i in range(0, len(configs), batch_size)
    ]
    return torch.logsumexp(torch.cat(parts), dim=0)


def assert_normalized(
    log_prob: Callable[[torch.Tensor], torch.Tensor], configs: torch.Tensor, atol: float = 1e-4
) -> float:
    """Assert that the probabilities of all ``configs`` sum to one; return the total mass."""
    total = float(total_log_prob(log_prob, configs).exp())
    assert abs(total - 1.0) < atol, f"probabilities sum to {total:.8f}, not 1"
    return total


def dependency_matrix(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Which inputs each output depends on, by gradients: ``dep[i, j]`` is True iff
    d out_i / d x_j != 0.

    ``x`` is one real-valued input of any shape (no batch dimension); it is flattened to ``D_in``.
    ``f`` takes a batch ``(1, *x.shape)`` and returns ``(1, D_out, ...)``: one slice per output
    dimension, whatever follows (logits over K classes, mixture parameters, ...) is reduced by a
    random projection so that no dependence can cancel out.
    """
    x = x.detach().clone().float().unsqueeze(0).requires_grad_(True)
    out = f(x)
    out = out.reshape(out.shape[0], out.shape[1], -1)[0]  # (D_out, R)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(0)).to(out)
    rows = []
    for i in range(out.shape[0]):
        (grad,) = torch.autograd.grad(
            (out[i] * weights[i]).sum(), x, retain_graph=True, allow_unused=True
        )
        rows.append(
            torch.zeros(x.numel(), dtype=torch.bool)
            if grad is None
            else (grad != 0).flatten().cpu()
        )
    return torch.stack(rows)


@torch.no_grad()
def perturbation_dependency(
    f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, num_classes: int, atol: float = 0.0
) -> torch.Tensor:
    """Like :func:`dependency_matrix` for token inputs: change each ``x_j`` and see which outputs
    move.

    ``x (D,)`` long; ``f`` maps ``(B, D)`` long to ``(B, D_out, ...)``. Input j is set to every
    other class in turn; ``dep[i, j]`` is True if output i changed by more than ``atol`` for any
    of them.
    """
    x = x.flatten()
    columns = []
    for j in range(x.numel()):
        # Row 0 is x itself, in the same batch as its variants: on a GPU a batch of another
        # size may take other kernels (another reduction order), and the base would then differ
        # from the variants' outputs by rounding alone, at every position. Strict float32 for
        # the same reason: TF32's rounding (about 1e-3) is far above any useful ``atol``.
        variants = x.repeat(num_classes, 1)
        variants[1:, j] = torch.tensor([c for c in range(num_classes) if c != int(x[j])])
        with exact_float32():
            out = f(variants).float()
        diff = (out[1:] - out[:1]).abs().reshape(num_classes - 1, out.shape[1], -1)
        columns.append((diff.amax(dim=(0, 2)) > atol).cpu())
    return torch.stack(columns, dim=1)


def assert_causal(
    dep: torch.Tensor,
    order: torch.Tensor | None = None,
    out_order: torch.Tensor | None = None,
    strict: bool = True,
) -> None:
    """Assert output i depends only on inputs that come before it in the autoregressive order.

    ``order[j]`` is the position in the order of input column j (default ``0..D_in-1``; several
    columns share a position when an input is one-hot or has channels); ``out_order[i]`` is the
    position whose conditional output i gives (default ``0..D_out-1``). With ``strict`` the
    conditional at position t may not see inputs at t itself (``p(x_t | x_<t)``); otherwise it may.
    """
    d_out, d_in = dep.shape
    order = torch.arange(d_in) if order is None else torch.as_tensor(order).flatten()
    out_order = torch.arange(d_out) if out_order is None else torch.as_tensor(out_order).flatten()
    if len(order) != d_in or len(out_order) != d_out:
        raise ValueError(
            f"orders of length {len(order)}/{len(out_order)} for a {d_out}x{d_in} matrix"
        )
    oi = out_order.unsqueeze(1)
    oj = order.unsqueeze(0)
    forbidden = (oj >= oi) if strict else (oj > oi)
    bad = dep & forbidden
    if bad.any():
        i, j = (int(v) for v in bad.nonzero()[0])
        raise AssertionError(
            f"not causal: output {i} (position {int(out_order[i])}) depends on input {j} "
            f"(position {int(order[j])}); {int(bad.sum())} forbidden dependencies in all"
        )


def sampler_p_value(
    samples: torch.Tensor, log_probs: torch.Tensor, configs: torch.Tensor, min_expected: float = 5.0
) -> float:
    """Chi-square goodness-of-fit p-value of ``samples (N, D)`` against exact ``p(configs)``.

    Configurations with an expected count below ``min_expected`` are pooled into one cell (the
    chi-square approximation needs it). A sample outside ``configs`` makes the p-value 0.
    """
    from scipy import stats

    n = samples.shape[0]
    index = {tuple(c): k for k, c in enumerate(configs.reshape(len(configs), -1).tolist())}
    counts = np.zeros(len(configs))
    for s in samples.reshape(n, -1).tolist():
        k = index.get(tuple(s))
        if k is None:
            return 0.0
        counts[k] += 1
    probs = log_probs.double().exp().cpu().numpy()
    probs = probs / probs.sum()
    expected = probs * n
    big = expected >= min_expected
    obs = list(counts[big]) + ([counts[~big].sum()] if (~big).any() else [])
    exp = list(expected[big]) + ([expected[~big].sum()] if (~big).any() else [])
    if len(obs) < 2:
        return 1.0
    return float(stats.chisquare(obs, exp).pvalue)


def assert_sampler_matches(
    samples: torch.Tensor, log_probs: torch.Tensor, configs: torch.Tensor, alpha: float = 1e-3
) -> float:
    """Fail if the chi-square test rejects at level ``alpha`` (the false-alarm rate of a correct
    sampler). With a fixed seed the outcome is deterministic; return the p-value."""
    p = sampler_p_value(samples, log_probs, configs)
    assert p > alpha, f"samples do not follow the model's probabilities (chi-square p = {p:.2e})"
    return p


def assert_prompt_kept(samples: torch.Tensor, prompt: torch.Tensor) -> None:
    """The first ``prompt.shape[-1]`` dimensions of every sample equal the prompt."""
    c = prompt.shape[-1]
    kept = samples[..., :c].cpu() == prompt.cpu().expand_as(samples[..., :c])
    assert bool(kept.all()), "sampling changed the prompt"


def notebook_namespace(path, tag: str = "builds-model") -> dict:
    """Run the code cells of notebook ``path`` tagged ``tag`` in a fresh namespace; return it.

    The chapters write their models in front of the reader in cells tagged ``builds-model``;
    the unit tests take those very cells and assert that they equal the ``arnb`` classes, so a
    library change that breaks "the notebook's model is the library's model" fails the suite.
    Tagged cells must be plain Python (no magics) and import what they use.
    """
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    cells = [
        c.source for c in nb.cells if c.cell_type == "code" and tag in c.metadata.get("tags", [])
    ]
    if not cells:
        raise ValueError(f"{path}: no code cell is tagged {tag!r}")
    namespace: dict = {"__name__": f"notebook_{tag.replace('-', '_')}"}
    for index, source in enumerate(cells):
        exec(compile(source, f"{path}[{tag} cell {index}]", "exec"), namespace)  # noqa: S102
    return namespace


def exercise_answer(path, name: str, student: bool = False):
    """The function or class ``name`` as the exercise cell of notebook ``path`` defines it.

    The cell's solution is run (``student=True``: the student version's stub instead) with its
    checker calls left out, in a namespace holding ``math``, ``torch``, ``nn``, ``F`` and ``np``
    (an exercise cell is self-contained otherwise). The checkers' tests use it, so they test the
    very solution the notebook shows, and the stub a student starts from.
    """
    import linecache
    import math
    import re

    import nbformat
    import numpy as np
    import torch.nn.functional as F
    from torch import nn

    from .student import strip_solutions

    nb = nbformat.read(str(path), as_version=4)
    pattern = re.compile(rf"^(def|class) {re.escape(name)}\b", re.M)
    cells = [c for c in nb.cells if c.cell_type == "code" and pattern.search(c.source)]
    if len(cells) != 1:
        raise ValueError(f"{path}: {len(cells)} code cells define {name!r}, expected one")
    source = cells[0].source
    if student:
        source = strip_solutions(source)
    source = "\n".join(line for line in source.splitlines() if "check_" not in line)
    namespace: dict = {"math": math, "torch": torch, "nn": nn, "F": F, "np": np}
    filename = f"<{path}[{name}]>"
    # registered like IPython's cells, so inspect.getsource (and the checkers' stub test) see it
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102
    return namespace[name]
