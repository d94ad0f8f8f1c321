"""Chapter 6: every exercise checker passes the notebook's own solution, fails typical wrong
answers, and says "not attempted yet" (one line) on the student stub."""

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from arnb.exercises import ch06 as ex
from arnb.testing import exercise_answer

pytestmark = pytest.mark.usefixtures("one_thread")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "06_gpt.ipynb"


def passes(check, answer, capsys) -> str:
    assert check(answer) is True
    out = capsys.readouterr().out
    assert ": correct" in out
    return out


def fails(check, answer, capsys) -> str:
    assert check(answer) is False
    out = capsys.readouterr().out
    assert "not yet right" in out
    return out


def not_attempted(check, name, capsys) -> None:
    assert check(exercise_answer(NOTEBOOK, name, student=True)) is False
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "not attempted yet" in lines[0], lines


# --------------------------------------------------------------------------- 1: one BPE merge


def test_bpe_merge(capsys):
    passes(ex.check_bpe_merge, exercise_answer(NOTEBOOK, "merge"), capsys)

    def merge_overlapping(ids, pair, new):  # replaces every position where the pair starts
        out, i = [], 0
        while i < len(ids):
            if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
                out.append(new)
            else:
                out.append(ids[i])
            i += 1
        return out

    def merge_first_only(ids, pair, new):  # stops after the first occurrence
        for i in range(len(ids) - 1):
            if (ids[i], ids[i + 1]) == pair:
                return ids[:i] + [new] + ids[i + 2 :]
        return ids

    assert "overlapping run" in fails(ex.check_bpe_merge, merge_overlapping, capsys)
    assert "several" in fails(ex.check_bpe_merge, merge_first_only, capsys)
    not_attempted(ex.check_bpe_merge, "merge", capsys)


# --------------------------------------------------------------------------- 2: the causal mask


def test_causal_mask(capsys):
    passes(ex.check_causal_mask, exercise_answer(NOTEBOOK, "causal_mask"), capsys)
    upper = fails(ex.check_causal_mask, lambda T: torch.ones(T, T, dtype=torch.bool).triu(), capsys)
    assert "future" in upper
    no_diagonal = fails(ex.check_causal_mask, lambda T: torch.ones(T, T).tril(-1).bool(), capsys)
    assert "itself" in no_diagonal
    inverted = fails(ex.check_causal_mask, lambda T: torch.ones(T, T).triu(1).bool(), capsys)
    assert "inverted" in inverted
    not_attempted(ex.check_causal_mask, "causal_mask", capsys)


# --------------------------------------------------------------- 3: an attention head with a window


def head_with(scale=True, mask="causal", window_slack=0):
    """A head with one of the usual slips: no scaling, no mask, a window one too wide."""

    def head(x, w_q, w_k, w_v, window=None):
        q, k, v = x @ w_q, x @ w_k, x @ w_v
        T, d = x.shape[1], q.shape[-1]
        t, s = torch.arange(T).unsqueeze(1), torch.arange(T).unsqueeze(0)
        allowed = (s <= t) if mask == "causal" else torch.ones(T, T, dtype=torch.bool)
        if window is not None:
            allowed = allowed & (t - s < window + window_slack)
        scores = q @ k.transpose(-2, -1) / (math.sqrt(d) if scale else 1.0)
        return scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ v

    return head


def test_attention_head(capsys):
    answer = exercise_answer(NOTEBOOK, "attention_head")
    passes(ex.check_attention_head, answer, capsys)
    assert "future" in fails(ex.check_attention_head, head_with(mask="none"), capsys)
    assert "sqrt(d)" in fails(ex.check_attention_head, head_with(scale=False), capsys)
    wide = fails(ex.check_attention_head, head_with(window_slack=1), capsys)
    assert "window=3" in wide and "no window" not in wide
    # a mask that hides the diagonal leaves query 0 with no key at all
    assert "NaN" in fails(ex.check_attention_head, head_with(window_slack=-1), capsys)
    not_attempted(ex.check_attention_head, "attention_head", capsys)


# --------------------------------------------------------------- 4: top-p


def test_top_p(capsys):
    passes(ex.check_top_p, exercise_answer(NOTEBOOK, "top_p_filter"), capsys)

    def top_p_off_by_one(logits, p):  # drops the token that crosses p
        probs, order = torch.sort(logits.softmax(-1), descending=True)
        drop = (probs.cumsum(-1) > p).scatter(-1, order, probs.cumsum(-1) > p)
        return logits.masked_fill(drop, float("-inf"))

    fails(ex.check_top_p, top_p_off_by_one, capsys)
    assert "unchanged" in fails(ex.check_top_p, lambda logits, p: logits.softmax(-1), capsys)
    not_attempted(ex.check_top_p, "top_p_filter", capsys)


# --------------------------------------------------------------- 5: the KV cache, every layer


def recompute_everything(model, inputs):  # right numbers, but no cache: every step reads all
    steps = [model.next_token_logits(inputs[:, : t + 1])[:, -1:] for t in range(inputs.shape[1])]
    return torch.cat(steps, dim=1)


def cache_with(position_zero=False, keep=True):
    """The solution with a slip: every step at position 0, or the cache never grows."""

    def cached(model, inputs):
        B, T = inputs.shape
        C, H = model.config.n_embd, model.config.n_head
        keys = [[] for _ in model.blocks]
        values = [[] for _ in model.blocks]
        out = []
        for t in range(T):
            pos = torch.tensor([0 if position_zero else t])
            h = model.wte(inputs[:, t : t + 1]) + model.wpe(pos)
            for layer, block in enumerate(model.blocks):
                q, k, v = block.attn.qkv(block.ln1(h)).split(C, dim=2)
                q, k, v = (z.view(B, 1, H, C // H).transpose(1, 2) for z in (q, k, v))
                if keep:
                    keys[layer].append(k)
                    values[layer].append(v)
                    k, v = torch.cat(keys[layer], dim=2), torch.cat(values[layer], dim=2)
                att = (q @ k.transpose(-2, -1) / math.sqrt(C // H)).softmax(-1)
                h = h + block.attn.proj((att @ v).transpose(1, 2).reshape(B, 1, C))
                h = h + block.mlp(block.ln2(h))
            out.append(F.linear(model.ln_f(h), model.head_weight))
        return torch.cat(out, dim=1)

    return cached


def test_cached_logits(capsys):
    passes(ex.check_cached_logits, exercise_answer(NOTEBOOK, "cached_logits"), capsys)
    passes(ex.check_cached_logits, cache_with(), capsys)  # the helper without a slip is right
    assert "one call" in fails(ex.check_cached_logits, recompute_everything, capsys)
    assert "position 1" in fails(ex.check_cached_logits, cache_with(position_zero=True), capsys)
    assert "position 1" in fails(ex.check_cached_logits, cache_with(keep=False), capsys)
    not_attempted(ex.check_cached_logits, "cached_logits", capsys)


def test_checkers_refuse_an_answer_that_is_not_a_function():
    with pytest.raises(TypeError, match="pass your function"):
        ex.check_cached_logits(None)
