"""Self-checks for the exercises of chapter 6 (GPT).

See :mod:`arnb.exercises` for what every ``check_*`` function does.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..sampling import filter_logits
from . import call, call_shaped, checker, report, require_callable


@checker
def check_causal_mask(fn: Callable[[int], torch.Tensor]) -> bool:
    """Exercise: ``fn(T) -> (T, T)`` bool mask, True where query position i may attend to key j.

    Position i may see itself and everything before it, nothing after it.
    """
    require_callable(fn, "check_causal_mask(causal_mask)")
    problems = []
    for T in (1, 2, 5, 9):
        want = torch.tril(torch.ones(T, T, dtype=torch.bool))
        got, err = call_shaped(fn, T, shape=want.shape)
        if err:
            problems.append(f"T={T}: {err}")
            continue
        got = got.bool()
        if torch.equal(got, want):
            continue
        if torch.equal(got, ~want):
            problems.append(f"T={T}: the mask is inverted (True must mean 'may attend')")
        elif torch.equal(got, torch.triu(torch.ones(T, T, dtype=torch.bool))):
            problems.append(f"T={T}: this lets position i see the future (j > i); transpose it")
        elif torch.equal(got, torch.tril(torch.ones(T, T, dtype=torch.bool), diagonal=-1)):
            problems.append(f"T={T}: position i must also attend to itself (the diagonal)")
        else:
            i, j = (int(v) for v in (got != want).nonzero()[0])
            problems.append(
                f"T={T}: entry ({i}, {j}) is {bool(got[i, j])}, expected {bool(want[i, j])}"
            )
    return report("causal mask", problems)


@checker
def check_bpe_merge(fn: Callable[[list[int], tuple[int, int], int], list[int]]) -> bool:
    """Exercise: ``fn(ids, pair, new_id) -> ids`` with every occurrence of ``pair`` replaced by
    ``new_id``, scanning left to right without overlaps (``aaa`` with pair ``aa`` -> ``Z a``)."""
    require_callable(fn, "check_bpe_merge(merge)")
    cases = [
        ("one occurrence", [1, 2, 3], (2, 3), 9, [1, 9]),
        ("several", [1, 2, 1, 2, 5, 1, 2], (1, 2), 7, [7, 7, 5, 7]),
        ("overlapping run", [4, 4, 4], (4, 4), 8, [8, 4]),
        ("overlapping run of four", [4, 4, 4, 4], (4, 4), 8, [8, 8]),
        ("pair absent", [1, 3, 2], (1, 2), 9, [1, 3, 2]),
        ("order matters", [2, 1], (1, 2), 9, [2, 1]),
        ("empty", [], (1, 2), 9, []),
    ]
    problems = []
    for name, ids, pair, new, want in cases:
        got, err = call(fn, list(ids), pair, new)
        if err:
            problems.append(f"{name}: {err}")
            continue
        got = got.tolist() if isinstance(got, torch.Tensor) else list(got)
        if got != want:
            problems.append(f"{name}: merge({ids}, {pair}, {new}) should be {want}, got {got}")
    return report("BPE merge", problems)


@checker
def check_top_p(fn: Callable[[torch.Tensor, float], torch.Tensor]) -> bool:
    """Exercise: ``fn(logits (B, K), p) -> logits`` keeping the smallest set of most probable
    categories whose probability reaches ``p`` and setting the others to ``-inf``."""
    require_callable(fn, "check_top_p(top_p_filter)")
    g = torch.Generator().manual_seed(0)
    cases = {
        "hand-made (probs 0.5, 0.3, 0.2; p=0.7 keeps two)": (
            torch.log(torch.tensor([[0.2, 0.5, 0.3]])),
            0.7,
        ),
        "p=1 keeps all": (torch.randn(3, 6, generator=g), 1.0),
        "tiny p keeps the top one": (torch.randn(4, 7, generator=g), 1e-6),
        "random": (torch.randn(5, 10, generator=g) * 2, 0.9),
    }
    problems = []
    for name, (logits, p) in cases.items():
        want_kept = torch.isfinite(filter_logits(logits, top_p=p))
        got, err = call_shaped(fn, logits.clone(), p, shape=logits.shape)
        if err:
            problems.append(f"{name}: {err}")
            continue
        kept = torch.isfinite(got)
        if not torch.equal(kept, want_kept):
            problems.append(
                f"{name}: kept {kept.int().tolist()}, expected {want_kept.int().tolist()}"
            )
        elif not torch.allclose(got[kept].float(), logits[kept].float()):
            problems.append(
                f"{name}: the kept logits must stay unchanged (softmax renormalises them)"
            )
    return report("top-p filter", problems)
