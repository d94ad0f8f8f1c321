"""Chapter 6: the GPT is causal in both attention paths, normalised, cached == uncached, and its
sampler draws from the (filtered) conditionals it computes."""

import math

import pytest
import torch
import torch.nn.functional as F

from arnb.exercises.ch06 import check_bpe_merge, check_causal_mask, check_top_p
from arnb.models.gpt import GPT, GPTConfig
from arnb.chapters.ch06_gpt import evaluate_split, kv_cache_benchmark
from arnb.sampling import filter_logits
from arnb.testing import (
    all_configurations,
    assert_causal,
    assert_normalized,
    assert_prompt_kept,
    assert_sampler_matches,
    perturbation_dependency,
)


def tiny_gpt(vocab=5, block=8, layers=2, heads=2, embd=16, attention="sdpa", seed=0) -> GPT:
    torch.manual_seed(seed)
    model = GPT(
        GPTConfig(
            vocab_size=vocab,
            block_size=block,
            n_layer=layers,
            n_head=heads,
            n_embd=embd,
            attention=attention,
        )
    )
    # larger weights than the 0.02 initialisation, so that every dependence is clearly visible
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(20.0 if p.dim() >= 2 else 1.0)
    return model.eval()


# --------------------------------------------------------------------------- causality


@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
def test_causal(attention):
    model = tiny_gpt(attention=attention)
    x = torch.randint(0, 5, (8,), generator=torch.Generator().manual_seed(1))
    dep = perturbation_dependency(model, x, num_classes=5, atol=1e-4)  # batch-size round-off
    # logits[t] predict token t+1: they may use tokens 0..t (strict=False), nothing later
    assert_causal(dep, strict=False)
    allowed = torch.ones_like(dep).tril()
    assert dep[allowed].all(), "the probe should see every allowed dependence"


def test_causality_probe_catches_a_leaky_mask():
    model = tiny_gpt(attention="explicit")
    for block in model.blocks:
        block.attn.mask.fill_(True)  # attend everywhere: a model that sees the future
    x = torch.randint(0, 5, (8,), generator=torch.Generator().manual_seed(1))
    with pytest.raises(AssertionError, match="not causal"):
        assert_causal(perturbation_dependency(model, x, num_classes=5, atol=1e-4), strict=False)


def test_sdpa_equals_explicit_attention_values_and_gradients():
    model = tiny_gpt(vocab=11, block=16)
    x = torch.randint(0, 11, (3, 16), generator=torch.Generator().manual_seed(2))
    outs, grads = [], []
    for impl in ("sdpa", "explicit"):
        model.set_attention(impl)
        model.zero_grad()
        logits = model(x)
        logits.logsumexp(-1).sum().backward()
        outs.append(logits.detach())
        grads.append(model.blocks[0].attn.qkv.weight.grad.clone())
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-5)


def test_attention_maps_are_causal_distributions():
    model = tiny_gpt()
    x = torch.randint(0, 5, (2, 8), generator=torch.Generator().manual_seed(3))
    att = model.attention_maps(x)
    assert att.shape == (2, 2, 2, 8, 8)
    torch.testing.assert_close(att.sum(-1), torch.ones(2, 2, 2, 8))
    assert (att.triu(diagonal=1) == 0).all()


# --------------------------------------------------------------------------- likelihood


def test_normalised_given_the_first_token():
    model = tiny_gpt(vocab=3, block=5)
    configs = all_configurations(4, 3)  # x_1..x_4 for a fixed x_0
    for x0 in range(3):
        full = torch.cat([torch.full((len(configs), 1), x0), configs], dim=1)
        assert_normalized(model.log_prob, full)


def test_log_prob_against_torch_distributions_and_cross_entropy():
    model = tiny_gpt(vocab=7, block=10)
    x = torch.randint(0, 7, (4, 10), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        logits = model(x)[:, :-1]
        want = torch.distributions.Categorical(logits=logits).log_prob(x[:, 1:]).sum(-1)
        got = model.log_prob(x)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        ce = F.cross_entropy(logits.reshape(-1, 7), x[:, 1:].reshape(-1))
        torch.testing.assert_close(-got.sum(), ce * x[:, 1:].numel(), rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(model.loss(x[:, :-1], x[:, 1:]), ce)


def test_weight_tying():
    model = tiny_gpt()
    assert model.head.weight is model.wte.weight
    assert model.num_parameters() == sum(p.numel() for p in set(model.parameters()))


def test_evaluate_split_scores_every_token_once():
    model = tiny_gpt(vocab=5, block=4)
    ids = torch.randint(0, 5, (15,), generator=torch.Generator().manual_seed(5))  # 14 targets
    windows = [ids[0:5], ids[4:9], ids[8:13], ids[12:15]]  # 4 + 4 + 4 + 2 targets
    with torch.no_grad():
        nll = -sum(float(model.log_prob(w.unsqueeze(0))) for w in windows)
    assert math.isclose(evaluate_split(model, ids, batch_size=2), nll / 14, rel_tol=1e-5)


# --------------------------------------------------------------------------- sampling


def exact_filtered_log_probs(model, prompt, configs, **filt):
    """log-probability of each continuation under the filtered conditionals the sampler uses."""
    full = torch.cat([prompt.expand(len(configs), -1), configs], dim=1)
    with torch.no_grad():
        logits = model(full[:, :-1])[:, prompt.shape[1] - 1 :]
    logp = F.log_softmax(filter_logits(logits, **filt), dim=-1)
    picked = logp.gather(-1, configs.unsqueeze(-1)).squeeze(-1)
    return picked.nan_to_num(neginf=-1e30).sum(-1)


@pytest.mark.parametrize("filt", [{}, {"temperature": 0.7, "top_p": 0.8}, {"top_k": 2}])
def test_sampler_matches_exact_probabilities(filt):
    model = tiny_gpt(vocab=3, block=6, seed=1)
    prompt = torch.tensor([[2, 0]])
    configs = all_configurations(3, 3)
    g = torch.Generator().manual_seed(6)
    samples = model.generate(prompt.expand(4000, -1), 3, generator=g, **filt)
    assert_prompt_kept(samples, prompt)
    log_probs = exact_filtered_log_probs(model, prompt, configs, **filt)
    support = log_probs > -1e29  # the filters remove some continuations entirely
    # a sample outside the support would make the p-value 0
    assert_sampler_matches(samples[:, 2:], log_probs[support], configs[support])
    if filt:  # and the filter mattered: the unfiltered model disagrees with these samples
        plain = exact_filtered_log_probs(model, prompt, configs)
        with pytest.raises(AssertionError):
            assert_sampler_matches(samples[:, 2:], plain, configs)


def test_sample_protocol_shapes():
    model = tiny_gpt()
    out = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, 8) and (out[:, 0] == 0).all()
    out = model.sample(2, prompt=torch.tensor([1, 2]), max_new_tokens=4)
    assert out.shape == (2, 6)
    assert_prompt_kept(out, torch.tensor([1, 2]))


# --------------------------------------------------------------------------- KV cache


@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
def test_cached_forward_equals_uncached_at_every_step(attention):
    model = tiny_gpt(vocab=9, block=12, attention=attention)
    x = torch.randint(0, 9, (2, 12), generator=torch.Generator().manual_seed(7))
    full = model(x)
    cache = model.new_cache(2)
    prefill = model(x[:, :5], cache)  # a prompt of 5 tokens at once ...
    torch.testing.assert_close(prefill, full[:, :5], rtol=1e-5, atol=1e-5)
    for t in range(5, 12):  # ... then one token at a time
        step = model(x[:, t : t + 1], cache)
        torch.testing.assert_close(step[:, 0], full[:, t], rtol=1e-5, atol=1e-5)
    assert cache.length == 12
    with pytest.raises(ValueError, match="longer than the context"):
        model(x[:, :1], cache)


@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
def test_cached_generation_equals_uncached(attention):
    model = tiny_gpt(vocab=9, block=8, attention=attention)
    prompt = torch.randint(0, 9, (3, 3), generator=torch.Generator().manual_seed(8))
    # 20 new tokens with a context of 8: the window restarts several times
    greedy = [model.generate(prompt, 20, greedy=True, use_cache=c) for c in (True, False)]
    assert torch.equal(greedy[0], greedy[1])
    sampled = [
        model.generate(prompt, 20, generator=torch.Generator().manual_seed(9), top_k=4, use_cache=c)
        for c in (True, False)
    ]
    assert torch.equal(sampled[0], sampled[1])
    assert not torch.equal(sampled[0], greedy[0])


def test_kv_cache_benchmark_reports_identical_tokens():
    model = tiny_gpt(vocab=9, block=16)
    result = kv_cache_benchmark(model, torch.tensor([1, 2, 3]), 20)
    assert result["same_tokens"] and result["new_tokens"] == 20


# --------------------------------------------------------------------------- bad input


def test_bad_input_errors():
    model = tiny_gpt()
    with pytest.raises(ValueError, match="longer than the context"):
        model.generate(torch.zeros(1, 9, dtype=torch.long), 1)
    with pytest.raises(ValueError, match="longer than the context"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="empty"):
        model.generate(torch.zeros(1, 0, dtype=torch.long), 1)
    for t in (0.0, -1.0):
        with pytest.raises(ValueError, match="temperature must be > 0"):
            model.generate(torch.zeros(1, 2, dtype=torch.long), 1, temperature=t)
    for p in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="top_p must be in"):
            model.generate(torch.zeros(1, 2, dtype=torch.long), 1, top_p=p)
    with pytest.raises(ValueError, match="values must lie in"):
        model(torch.tensor([[0, 5]]))
    with pytest.raises(TypeError, match="integer"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="at least two tokens"):
        model.log_prob(torch.zeros(2, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(vocab_size=5, n_embd=10, n_head=3)
    with pytest.raises(ValueError, match="attention must be"):
        model.set_attention("flash")


# --------------------------------------------------------------------------- exercises


def test_exercise_checkers_accept_right_and_reject_wrong(capsys):
    assert check_causal_mask(lambda T: torch.tril(torch.ones(T, T, dtype=torch.bool)))
    assert "correct" in capsys.readouterr().out
    assert not check_causal_mask(lambda T: torch.triu(torch.ones(T, T, dtype=torch.bool)))
    assert "future" in capsys.readouterr().out
    assert not check_causal_mask(lambda T: torch.ones(T, T).tril(-1).bool())
    assert not check_causal_mask(lambda T: 1 / 0)

    def merge(ids, pair, new):
        out, i = [], 0
        while i < len(ids):
            if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
                out.append(new)
                i += 2
            else:
                out.append(ids[i])
                i += 1
        return out

    def merge_overlapping(ids, pair, new):  # merges "aaa" as if it held two pairs
        out = list(ids)
        for i in range(len(ids) - 1):
            if (ids[i], ids[i + 1]) == pair:
                out[i] = new
        return [
            v for i, v in enumerate(out) if not (i > 0 and out[i - 1] == new and ids[i] == pair[1])
        ]

    assert check_bpe_merge(merge)
    assert not check_bpe_merge(merge_overlapping)
    assert not check_bpe_merge(lambda ids, pair, new: ids)

    assert check_top_p(lambda logits, p: filter_logits(logits, top_p=p))

    def top_p_off_by_one(logits, p):  # drops the category that crosses p
        probs, order = torch.sort(logits.softmax(-1), descending=True)
        drop = (probs.cumsum(-1) > p).scatter(-1, order, probs.cumsum(-1) > p)
        return logits.masked_fill(drop, float("-inf"))

    assert not check_top_p(top_p_off_by_one)
    assert not check_top_p(lambda logits, p: logits.softmax(-1))


def test_recipe_runs_under_smoke(tmp_path):
    from arnb.cli import main

    assert main(["run", "gpt-shakespeare-char", "--profile", "smoke", "--out", str(tmp_path)]) == 0
    import json

    m = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    assert m["kv_cache"]["same_tokens"] and m["steps_done"] == 20
    assert 1.0 < m["val_nats_per_char"] < math.log(65) + 0.5
    assert (tmp_path / "gpt_char_loss.png").stat().st_size > 1000
