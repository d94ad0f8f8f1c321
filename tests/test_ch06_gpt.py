"""Chapter 6: the GPT is causal in both attention paths, normalised over whole sequences (BOS
first), cached == uncached, its sampler draws from the (filtered) conditionals it computes, and
bad input gets a clear error."""

import dataclasses
import inspect
import math

import pytest
import torch
import torch.nn.functional as F

import arnb.models.gpt as gpt_module
from arnb.chapters.ch06_gpt import SIZES, build_model, kv_cache_benchmark, kv_cache_by_size
from arnb.models.gpt import GPT, GPTConfig
from arnb.sampling import check_sampling, filter_logits
from arnb.testing import (
    all_configurations,
    assert_causal,
    assert_normalized,
    assert_prompt_kept,
    assert_sampler_matches,
    perturbation_dependency,
)
from arnb.train import Schedule, train
from arnb.validation import validation, validation_enabled


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
    dep = perturbation_dependency(model, x, num_classes=5, atol=1e-5)
    # logits[t] are p(x_t | x_<t): they may use tokens 0..t-1, not x_t itself, nothing later
    assert_causal(dep, strict=True)
    allowed = torch.ones_like(dep).tril(diagonal=-1)
    assert dep[allowed].all(), "the probe should see every allowed dependence"


def test_causality_probe_catches_a_leaky_mask():
    model = tiny_gpt(attention="explicit")
    for block in model.blocks:
        block.attn.mask.fill_(True)  # attend everywhere: a model that sees the future
    x = torch.randint(0, 5, (8,), generator=torch.Generator().manual_seed(1))
    with pytest.raises(AssertionError, match="not causal"):
        assert_causal(perturbation_dependency(model, x, num_classes=5, atol=1e-5))


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
    assert (att[..., 0, 0] == 1).all()  # the query that predicts x_0 reads BOS alone


# --------------------------------------------------------------------------- likelihood


def test_probabilities_of_all_sequences_sum_to_one():
    """With BOS read first, log_prob scores all T tokens: the 3^5 sequences sum to 1 (not 3)."""
    model = tiny_gpt(vocab=3, block=5)
    configs = all_configurations(5, 3)
    assert_normalized(model.log_prob, configs, atol=1e-5)
    for T in (1, 2, 4):  # every shorter length is a distribution too
        assert_normalized(model.log_prob, all_configurations(T, 3), atol=1e-5)
    # in float64 the sum is one to round-off
    with torch.no_grad():
        total = torch.logsumexp(model.double().log_prob(configs), 0)
    assert abs(float(total)) < 1e-12


def test_first_token_is_scored_from_bos():
    model = tiny_gpt(vocab=5, block=8)
    x = torch.randint(0, 5, (4, 6), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        bos_logits = model.next_token_logits(torch.full((1, 1), model.bos))[0, 0]
        first = F.log_softmax(bos_logits, -1)[x[:, 0]]
        torch.testing.assert_close(model.token_log_probs(x)[:, 0], first)
        # and the rest conditions on the tokens before: forward is the shifted Transformer
        torch.testing.assert_close(model(x), model.next_token_logits(model.with_bos(x)[:, :-1]))
    assert model.bos == 5 and model(x).shape == (4, 6, 5)  # BOS is read, never an output


def test_log_prob_against_torch_distributions_and_cross_entropy():
    model = tiny_gpt(vocab=7, block=10)
    x = torch.randint(0, 7, (4, 10), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        logits = model(x)
        want = torch.distributions.Categorical(logits=logits).log_prob(x).sum(-1)
        got = model.log_prob(x)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        ce = F.cross_entropy(logits.reshape(-1, 7), x.reshape(-1))  # mean over all 40 tokens
        torch.testing.assert_close(model.nll(x), ce)
        torch.testing.assert_close(-got.sum() / x.numel(), ce)


def test_integer_dtypes_float64_and_empty_batches():
    model = tiny_gpt(vocab=7, block=10)
    x = torch.randint(0, 7, (3, 10), generator=torch.Generator().manual_seed(5))
    want = model.log_prob(x)
    for dtype in (torch.uint8, torch.int32, torch.int16):
        torch.testing.assert_close(model.log_prob(x.to(dtype)), want)
    assert want.dtype == torch.float32 and want.shape == (3,)
    double = model.double().log_prob(x)
    assert double.dtype == torch.float64
    torch.testing.assert_close(double.float(), want, rtol=1e-4, atol=1e-4)
    model.float()
    assert model.log_prob(x[:0]).shape == (0,)
    assert torch.equal(model.log_prob(x[:, :0]), torch.zeros(3))  # the empty sequence: p = 1
    for empty in (x[:0], x[:, :0]):
        with pytest.raises(ValueError, match="at least one token"):
            model.nll(empty)  # not a silent NaN


def test_weight_tying_without_a_bos_output():
    model = tiny_gpt(vocab=5, embd=16)
    assert model.wte.weight.shape == (6, 16)  # 5 tokens + BOS
    assert model.head_weight.shape == (5, 16)
    assert model.head_weight.data_ptr() == model.wte.weight.data_ptr()  # a view, not a copy
    assert not any(p.shape == (5, 16) for p in model.parameters())  # no separate head
    assert model.num_parameters() == sum(p.numel() for p in set(model.parameters()))
    model.train()
    x = torch.randint(0, 5, (2, 8), generator=torch.Generator().manual_seed(6))
    model.nll(x).backward()
    assert model.wte.weight.grad[5].abs().sum() > 0  # BOS learns through the input side


@torch.no_grad()
def reference_sequence_nll(model: GPT, ids: torch.Tensor, stride: int) -> float:
    """Token by token: each token from the BOS-led window that first scores it."""
    T, N, total, scored = model.block_size, len(ids), 0.0, 0
    start = 0
    while scored < N:
        window = ids[start : start + T]
        logp = model.token_log_probs(window.unsqueeze(0))[0]
        for i in range(scored - start, len(window)):
            total -= float(logp[i])
        scored = start + len(window)
        start += stride
    return total / N


@pytest.mark.parametrize("stride", [None, 1, 3, 4])
@pytest.mark.parametrize("N", [1, 3, 4, 15, 16])
def test_sequence_nll_scores_every_token_once(N, stride):
    model = tiny_gpt(vocab=5, block=4)
    ids = torch.randint(0, 5, (N,), generator=torch.Generator().manual_seed(7))
    want = reference_sequence_nll(model, ids, stride or 4)
    got = model.sequence_nll(ids, stride=stride, batch_size=2)
    assert math.isclose(got, want, rel_tol=1e-6)


def test_sequence_nll_with_default_windows_is_mean_log_prob_of_blocks():
    model = tiny_gpt(vocab=5, block=4)
    ids = torch.randint(0, 5, (14,), generator=torch.Generator().manual_seed(8))
    blocks = [ids[0:4], ids[4:8], ids[8:12], ids[12:14]]  # each read after BOS
    with torch.no_grad():
        want = -sum(float(model.log_prob(b.unsqueeze(0))) for b in blocks) / 14
    assert math.isclose(model.sequence_nll(ids), want, rel_tol=1e-6)
    assert model.training is False
    model.train()
    model.sequence_nll(ids)
    assert model.training, "sequence_nll restores the training flag"


def test_sequence_nll_bad_input():
    model = tiny_gpt(vocab=5, block=4)
    with pytest.raises(ValueError, match="empty"):
        model.sequence_nll(torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="1-D"):
        model.sequence_nll(torch.zeros(2, 3, dtype=torch.long))
    for stride in (0, 5):
        with pytest.raises(ValueError, match="stride"):
            model.sequence_nll(torch.zeros(9, dtype=torch.long), stride=stride)
    with pytest.raises(ValueError, match="values must lie in"):
        model.sequence_nll(torch.tensor([0, 5]))


# --------------------------------------------------------------------------- sampling


def exact_filtered_log_probs(model, prompt, configs, **filt):
    """log-probability of each continuation under the filtered conditionals the sampler uses."""
    full = torch.cat([prompt.expand(len(configs), -1), configs], dim=1)
    with torch.no_grad():
        logits = model(full)[:, prompt.shape[1] :]
    logp = F.log_softmax(filter_logits(logits, **filt), dim=-1)
    picked = logp.gather(-1, configs.unsqueeze(-1)).squeeze(-1)
    return picked.nan_to_num(neginf=-1e30).sum(-1)


@pytest.mark.parametrize("filt", [{}, {"temperature": 0.7, "top_p": 0.8}, {"top_k": 2}])
def test_sampler_matches_exact_probabilities(filt):
    model = tiny_gpt(vocab=3, block=6, seed=1)
    prompt = torch.tensor([[2, 0]])
    configs = all_configurations(3, 3)
    g = torch.Generator().manual_seed(6)
    samples = model.sample(4000, prompt=prompt[0], length=5, generator=g, **filt)
    assert_prompt_kept(samples, prompt)
    log_probs = exact_filtered_log_probs(model, prompt, configs, **filt)
    support = log_probs > -1e29  # the filters remove some continuations entirely
    # a sample outside the support would make the p-value 0
    assert_sampler_matches(samples[:, 2:], log_probs[support], configs[support])
    if filt:  # and the filter mattered: the unfiltered model disagrees with these samples
        plain = exact_filtered_log_probs(model, prompt, configs)
        with pytest.raises(AssertionError):
            assert_sampler_matches(samples[:, 2:], plain, configs)


def test_sampler_without_prompt_draws_from_log_prob():
    model = tiny_gpt(vocab=3, block=4, seed=2)
    configs = all_configurations(4, 3)
    samples = model.sample(4000, generator=torch.Generator().manual_seed(3))  # length 4
    assert samples.shape == (4000, 4) and samples.max() < 3  # BOS is never generated
    with torch.no_grad():
        assert_sampler_matches(samples, model.log_prob(configs), configs)


def test_sample_protocol():
    model = tiny_gpt()
    params = inspect.signature(model.sample).parameters
    assert all(p.kind == p.KEYWORD_ONLY for name, p in params.items() if name != "n")
    assert not hasattr(model, "generate") and not hasattr(model, "loss")
    out = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, 8) and out.dtype == torch.long  # length defaults to one context
    out = model.sample(2, prompt=torch.tensor([1, 2]), length=6)
    assert out.shape == (2, 6)
    assert_prompt_kept(out, torch.tensor([1, 2]))
    per_row = torch.tensor([[1, 2], [3, 4]], dtype=torch.int32)
    assert_prompt_kept(model.sample(2, prompt=per_row, length=5), per_row)
    # a prompt as long as ``length``: nothing left to draw
    assert torch.equal(model.sample(2, prompt=per_row, length=2), per_row.long())
    # sampling leaves the model's mode and the validation switch as they were
    model.train()
    model.sample(1, length=3)
    assert model.training and validation_enabled()


def test_sampling_loop_runs_without_value_checks(monkeypatch):
    """The inputs are checked once per call; the loop never reads a tensor to validate."""
    seen = []

    def spy(logits, *args):
        seen.append(validation_enabled())
        return filter_logits(logits, *args)

    monkeypatch.setattr(gpt_module, "filter_logits", spy)
    tiny_gpt().sample(2, length=6)
    assert seen == [False] * 6


# --------------------------------------------------------------------------- KV cache


@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
def test_cached_forward_equals_uncached_at_every_step(attention):
    model = tiny_gpt(vocab=9, block=12, attention=attention)
    x = torch.randint(0, 9, (2, 12), generator=torch.Generator().manual_seed(7))
    inputs = model.with_bos(x)[:, :-1]  # BOS, x_0 .. x_10
    full = model.next_token_logits(inputs)
    torch.testing.assert_close(full, model(x))
    cache = model.new_cache(2)
    prefill = model.next_token_logits(inputs[:, :5], cache)  # a prompt of 5 inputs at once ...
    torch.testing.assert_close(prefill, full[:, :5], rtol=1e-5, atol=1e-5)
    for t in range(5, 12):  # ... then one input at a time
        step = model.next_token_logits(inputs[:, t : t + 1], cache)
        torch.testing.assert_close(step[:, 0], full[:, t], rtol=1e-5, atol=1e-5)
    assert cache.length == 12
    with pytest.raises(ValueError, match="more than the context"):
        model.next_token_logits(inputs[:, :1], cache)


@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
def test_cached_generation_equals_uncached(attention):
    model = tiny_gpt(vocab=9, block=8, attention=attention)
    prompt = torch.randint(0, 9, (3, 3), generator=torch.Generator().manual_seed(8))
    # 20 new tokens with a context of 8: the window restarts several times
    greedy = [
        model.sample(3, prompt=prompt, length=23, greedy=True, use_cache=c) for c in (True, False)
    ]
    assert torch.equal(greedy[0], greedy[1])
    sampled = [
        model.sample(
            3,
            prompt=prompt,
            length=23,
            generator=torch.Generator().manual_seed(9),
            top_k=4,
            use_cache=c,
        )
        for c in (True, False)
    ]
    assert torch.equal(sampled[0], sampled[1])
    assert not torch.equal(sampled[0], greedy[0])


def test_window_restart_conditions_on_bos_and_the_last_half():
    model = tiny_gpt(vocab=9, block=4)
    prompt = torch.tensor([[1, 2, 3, 4, 5]])  # longer than the window already
    out = model.sample(1, prompt=prompt, length=6, greedy=True)
    with torch.no_grad():  # predicting x_5 reads BOS and the last block_size // 2 = 2 tokens
        want = model.next_token_logits(model.with_bos(prompt[:, 3:]))[0, -1].argmax()
    assert int(out[0, 5]) == int(want)


def test_kv_cache_benchmark_reports_identical_tokens():
    model = tiny_gpt(vocab=9, block=16)
    result = kv_cache_benchmark(model, torch.tensor([1, 2, 3]), 20, repeats=2)
    assert result["same_tokens"] and result["new_tokens"] == 20


def test_kv_cache_by_size_times_the_trained_model_where_it_has_the_shape():
    run = dataclasses.replace(
        SIZES["smoke"], kv_new_tokens=10, kv_block_size=16, kv_sizes=((2, 2, 16), (1, 2, 8))
    )
    trained = tiny_gpt(vocab=9, block=16)  # 2 layers, 2 heads, 16 wide
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    rows = kv_cache_by_size(run, trained, torch.tensor([1]))
    assert torch.equal(torch.rand(3), expected)  # the untrained models' seed stays inside
    assert [(r["n_layer"], r["n_head"], r["n_embd"], r["trained"]) for r in rows] == [
        (2, 2, 16, True),
        (1, 2, 8, False),
    ]
    assert rows[0]["parameters"] == trained.num_parameters()
    assert rows[1]["parameters"] < trained.num_parameters()
    assert all(r["same_tokens"] and r["context"] == 16 for r in rows)


# --------------------------------------------------------------------------- bad input


def test_bad_input_errors():
    model = tiny_gpt()
    with pytest.raises(ValueError, match="more than the context"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="more than the context"):
        model.next_token_logits(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="prompt must have shape"):
        model.sample(1, prompt=torch.zeros(5, dtype=torch.long), length=4)
    with pytest.raises(ValueError, match="values must lie in"):
        model.sample(1, prompt=torch.tensor([5]))  # BOS is not a token of a prompt
    with pytest.raises(ValueError, match="values must lie in"):
        model(torch.tensor([[0, 5]]))
    with pytest.raises(ValueError, match=r"found range \[-1, 2\]"):
        model.log_prob(torch.tensor([[2, -1]]))
    with pytest.raises(TypeError, match="integer"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"\(batch, length\)"):
        model.log_prob(torch.zeros(3, dtype=torch.long))
    for bad in ({"n": 0}, {"n": 2.0}, {"length": 0}, {"length": 2.5}):
        kwargs = {"n": 1, **bad}
        with pytest.raises((TypeError, ValueError), match="n must|length must"):
            model.sample(kwargs.pop("n"), **kwargs)
    with pytest.raises(TypeError):
        model.sample(1, torch.tensor([1]))  # the prompt is keyword-only
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(vocab_size=5, n_embd=10, n_head=3)
    with pytest.raises(ValueError, match="attention must be"):
        model.set_attention("flash")


@pytest.mark.parametrize("greedy", [False, True])
def test_sampling_knobs_are_checked_also_when_greedy(greedy):
    model = tiny_gpt()
    sample = lambda **knobs: model.sample(1, length=3, greedy=greedy, **knobs)  # noqa: E731
    for t in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="temperature must be > 0"):
            sample(temperature=t)
    for p in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="top_p must be in"):
            sample(top_p=p)
    with pytest.raises(TypeError, match="top_k must be an int, got 2.5"):
        sample(top_k=2.5)
    with pytest.raises(ValueError, match="top_k must lie in"):
        sample(top_k=0)
    with pytest.raises(TypeError, match="temperature must be a number"):
        sample(temperature="hot")


def test_filter_logits_refuses_rows_without_a_distribution():
    ok = torch.tensor([[0.0, float("-inf"), 1.0]])
    assert torch.isfinite(torch.softmax(filter_logits(ok, top_k=1), -1)).all()
    for bad_row in (
        [float("-inf")] * 3,  # no category possible: softmax would be NaN
        [0.0, float("nan"), 1.0],
        [0.0, float("inf"), 1.0],
    ):
        logits = torch.cat([ok, torch.tensor([bad_row])])
        with pytest.raises(ValueError, match=r"row \(1,\) has no finite maximum"):
            filter_logits(logits)
    with validation(False):  # the hot loop's setting: no check, no device sync
        filter_logits(torch.full((1, 3), float("-inf")))
    assert check_sampling(1, 3, 1) == (1.0, 3, 1.0)
    with pytest.raises(TypeError, match="top_k"):
        filter_logits(ok, top_k=2.5)
    assert filter_logits(ok.double()).dtype == torch.float64


# --------------------------------------------------------------------------- training


def test_training_beats_the_uniform_model_clearly():
    """A tiny GPT trained on a repetitive text must get far below ln K (and near the truth)."""
    K, period = 6, torch.tensor([0, 1, 2, 3, 4, 5, 4, 3, 2, 1])
    text = period.repeat(60)  # deterministic once a token and the one before it are known
    torch.manual_seed(0)
    model = GPT(GPTConfig(K, block_size=8, n_layer=1, n_head=2, n_embd=32))

    def windows():
        g = torch.Generator().manual_seed(0)
        while True:
            start = torch.randint(len(text) - 8, (16,), generator=g)
            yield text[start.unsqueeze(1) + torch.arange(8)]

    history = train(
        model,
        lambda m, x: m.nll(x),
        windows(),
        Schedule(steps=150, lr=1e-2, warmup=10, threads=1),
        eval_fn=lambda m: {"val": m.sequence_nll(text[:200])},
        progress=False,
    )
    # the first token of a window is a guess from the token frequencies (1.75 nats), the
    # second one from a single token (0.55 nats); the rest are determined by the two before
    # them: (1.75 + 0.55) / 8 = 0.29 nats per token at best, against ln 6 = 1.79 for uniform
    assert history.eval[-1]["val"] < 0.45
    assert validation_enabled()


def test_sizes_nest_config_and_schedule():
    for run in SIZES.values():
        assert isinstance(run.model, GPTConfig) and isinstance(run.schedule, Schedule)
    run = SIZES["smoke"]
    model = build_model(run, run.model.vocab_size, "cpu")
    assert model.config == run.model and model.config is not run.model
    with pytest.raises(ValueError, match="tokenizer has 50 ids"):
        build_model(run, 50, "cpu")
    other = dataclasses.replace(run, model=dataclasses.replace(run.model, vocab_size=50))
    assert build_model(other, 50, "cpu").vocab_size == 50


def test_recipe_runs_under_smoke(tmp_path):
    from arnb.cli import main

    assert main(["run", "gpt-shakespeare-char", "--profile", "smoke", "--out", str(tmp_path)]) == 0
    import json

    m = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    assert m["steps_done"] == 20
    kv = m["kv_cache"]
    assert [(r["n_layer"], r["n_embd"]) for r in kv] == [(2, 32), (2, 64)]
    assert all(r["same_tokens"] for r in kv)
    # 20 steps learn roughly the character frequencies (about 3.4 nats): clearly below the
    # uniform model's ln 65 = 4.17, which an untrained or broken model would not beat
    assert 2.0 < m["val_nats_per_char"] < math.log(65) - 0.5
    assert (tmp_path / "gpt_char_loss.png").stat().st_size > 1000
