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


def _allowed(T: int, window: int | None) -> torch.Tensor:
    """``(T, T)`` bool: query i may read key j (j <= i, and i - j < window if given)."""
    i, j = torch.arange(T).unsqueeze(1), torch.arange(T).unsqueeze(0)
    allowed = j <= i
    return allowed if window is None else allowed & (i - j < window)


@checker
def check_attention_head(fn: Callable[..., torch.Tensor]) -> bool:
    """Exercise: ``fn(x (B, T, C), w_q, w_k, w_v (C, d), window=None) -> (B, T, d)``, one
    causal attention head; with ``window`` query t reads only keys t - window + 1 .. t."""
    require_callable(fn, "check_attention_head(attention_head)")
    g = torch.Generator().manual_seed(0)
    B, T, C, d = 2, 7, 8, 4
    x = torch.randn(B, T, C, generator=g)
    w_q, w_k, w_v = (torch.randn(C, d, generator=g) for _ in range(3))
    q, k, v = x @ w_q, x @ w_k, x @ w_v

    def attend(allowed, scale=d**-0.5):
        scores = (q @ k.transpose(-2, -1) * scale).masked_fill(~allowed, float("-inf"))
        return scores.softmax(-1) @ v

    problems = []
    for window in (None, 3, 1, T):
        name = "no window" if window is None else f"window={window}"
        want = attend(_allowed(T, window))
        got, err = call_shaped(fn, x.clone(), w_q, w_k, w_v, window, shape=(B, T, d))
        if err:
            problems.append(f"{name}: {err}")
            continue
        got = got.float()
        if torch.allclose(got, want, atol=1e-5):
            continue
        if torch.isnan(got).any():
            problems.append(f"{name}: NaN in the output: does every query see at least itself?")
        elif torch.allclose(got, attend(torch.ones(T, T, dtype=torch.bool)), atol=1e-5):
            problems.append(f"{name}: position t reads keys after t (the future)")
        elif torch.allclose(got, attend(_allowed(T, window), scale=1.0), atol=1e-5):
            problems.append(f"{name}: the scores are not scaled by 1/sqrt(d)")
        else:
            t = int((got - want).abs().amax(dim=(0, 2)).argmax())
            problems.append(
                f"{name}: output at position {t} differs from the expected by "
                f"{float((got - want).abs().max()):.3g}"
            )
    return report("attention head", problems, cases=4)


@checker
def check_cached_logits(fn: Callable[..., torch.Tensor]) -> bool:
    """Exercise: ``fn(model, inputs (B, T)) -> logits (B, T, K)``, the logits of an
    :class:`arnb.models.GPT` computed one position at a time with cached keys and values.

    The result must equal ``model.next_token_logits(inputs)``, and every call of a layer's
    ``attn.qkv`` must read exactly one position (a cache computes nothing twice).
    """
    from ..models.gpt import GPT, GPTConfig

    require_callable(fn, "check_cached_logits(cached_logits)")
    torch.manual_seed(0)
    model = GPT(GPTConfig(11, block_size=10, n_layer=2, n_head=2, n_embd=16)).eval()
    seen: list[int] = []
    hooks = [
        block.attn.qkv.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[1]))
        for block in model.blocks
    ]
    g = torch.Generator().manual_seed(1)
    problems = []
    try:
        for B, T in ((1, 4), (3, 10)):
            x = torch.randint(0, 11, (B, T - 1), generator=g)
            inputs = model.with_bos(x)  # BOS, then T - 1 tokens
            with torch.no_grad():
                want = model.next_token_logits(inputs)
            seen.clear()
            with torch.no_grad():
                got, err = call_shaped(fn, model, inputs.clone(), shape=tuple(want.shape))
            if err:
                problems.append(f"B={B}, T={T}: {err}")
                continue
            if any(n != 1 for n in seen):
                problems.append(
                    f"B={B}, T={T}: a layer read {max(seen)} positions in one call; with a "
                    "cache each step reads only the new position"
                )
                continue
            if len(seen) != T * len(model.blocks):
                problems.append(
                    f"B={B}, T={T}: the layers ran {len(seen)} times, expected "
                    f"{T * len(model.blocks)} (every layer once per position)"
                )
                continue
            gap = (got.float() - want).abs().amax(dim=(0, 2))
            if float(gap.max()) > 1e-4:
                t = int((gap > 1e-4).nonzero()[0])
                problems.append(
                    f"B={B}, T={T}: logits wrong from position {t} on ("
                    + ("already the first one" if t == 0 else "right before it")
                    + f", max difference {float(gap.max()):.3g})"
                )
    finally:
        for hook in hooks:
            hook.remove()
    return report("cached logits", problems, cases=2)
