"""The chapter-3 exercise checkers pass the notebook's solutions, reject typical wrong answers
and say "not attempted yet" (one line) on the student notebook's stubs."""

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from arnb.exercises import ch03 as ex
from arnb.testing import exercise_answer

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "03_continuous.ipynb"


def solution(name):
    return exercise_answer(NOTEBOOK, name)


def assert_stub_not_attempted(check, name, capsys):
    capsys.readouterr()
    assert check(exercise_answer(NOTEBOOK, name, student=True)) is False
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "not attempted yet" in lines[0], lines


def assert_passes(check, answer, capsys):
    capsys.readouterr()
    passed = check(answer)
    out = capsys.readouterr().out
    assert passed and ": correct" in out, out


def assert_fails(check, answer, capsys, *phrases):
    capsys.readouterr()
    assert check(answer) is False
    out = capsys.readouterr().out
    assert "not yet right" in out, out
    for phrase in phrases:
        assert phrase in out, out


# ------------------------------------------------------------------ exercise 1: the MDN loss


def _split(out, min_scale):
    logits, means, raw = out.chunk(3, dim=-1)
    return logits, means, F.softplus(raw) + min_scale


def naive_mdn_nll(out, y, min_scale):  # log of a sum of densities: -inf far in the tails
    logits, means, scales = _split(out, min_scale)
    dens = torch.exp(-0.5 * ((y[:, None] - means) / scales) ** 2) / (
        scales * math.sqrt(2 * math.pi)
    )
    return -torch.log((torch.softmax(logits, -1) * dens).sum(-1)).mean()


def log_space(logits, means, scales, y):
    z = (y[:, None] - means) / scales
    log_n = -0.5 * z * z - torch.log(scales) - 0.5 * math.log(2 * math.pi)
    return torch.logsumexp(torch.log_softmax(logits, -1) + log_n, -1)


def no_floor_mdn_nll(out, y, min_scale):  # forgets + min_scale
    logits, means, raw = out.chunk(3, dim=-1)
    return -log_space(logits, means, F.softplus(raw), y).mean()


def unnormalised_mdn_nll(out, y, min_scale):  # raw logits instead of log_softmax
    logits, means, scales = _split(out, min_scale)
    z = (y[:, None] - means) / scales
    log_n = -0.5 * z * z - torch.log(scales) - 0.5 * math.log(2 * math.pi)
    return -torch.logsumexp(logits + log_n, -1).mean()


def summed_mdn_nll(out, y, min_scale):  # total, not the mean
    return -log_space(*_split(out, min_scale), y).sum()


def test_mdn_nll_checker(capsys):
    assert_passes(ex.check_mdn_nll, solution("mdn_nll"), capsys)
    assert_fails(ex.check_mdn_nll, naive_mdn_nll, capsys, "far tails", "logsumexp")
    assert_fails(ex.check_mdn_nll, no_floor_mdn_nll, capsys, "only the floor")
    assert_fails(ex.check_mdn_nll, unnormalised_mdn_nll, capsys, "shifted")
    assert_fails(ex.check_mdn_nll, summed_mdn_nll, capsys, "expected")
    assert_fails(ex.check_mdn_nll, lambda out, y, s: 1 / 0, capsys, "ZeroDivisionError")
    assert_stub_not_attempted(ex.check_mdn_nll, "mdn_nll", capsys)
    with pytest.raises(TypeError, match="function itself"):
        ex.check_mdn_nll(3)


# ------------------------------------------------------------------ exercise 2: pinball


def test_pinball_checker(capsys):
    answer = solution("pinball")
    assert_passes(ex.check_pinball_loss, answer, capsys)
    swapped = lambda p, t, tau: answer(p, t, 1 - tau)  # noqa: E731
    assert_fails(ex.check_pinball_loss, swapped, capsys, "swapped")
    assert_fails(ex.check_pinball_loss, lambda p, t, tau: (t - p).abs(), capsys)
    averaged = lambda p, t, tau: answer(p, t, tau).mean()  # noqa: E731
    assert_fails(ex.check_pinball_loss, averaged, capsys, "elementwise")
    assert_stub_not_attempted(ex.check_pinball_loss, "pinball", capsys)


# ------------------------------------------------------------------ exercise 3: bins


def test_binned_checker(capsys):
    answer = solution("binned_log_density")
    assert_passes(ex.check_binned_log_density, answer, capsys)

    def no_width(logits, low, high, y):
        return answer(logits, low, high, y) + math.log((high - low) / logits.shape[-1])

    def rounded_bins(logits, low, high, y):  # round() instead of floor(): the wrong bin
        k = logits.shape[-1]
        width = (high - low) / k
        idx = ((y - low) / width).round().long().clamp(0, k - 1)
        return torch.log_softmax(logits, -1).gather(-1, idx[:, None])[:, 0] - math.log(width)

    assert_fails(ex.check_binned_log_density, no_width, capsys, "bin width")
    assert_fails(ex.check_binned_log_density, rounded_bins, capsys, "expected")
    assert_stub_not_attempted(ex.check_binned_log_density, "binned_log_density", capsys)


# ------------------------------------------------------------------ exercise 4: AIQN sampler


def one_tau_for_all(conditionals, n, prompt=None, generator=None):  # one level per sample
    x = torch.zeros(n, len(conditionals))
    start = 0 if prompt is None else prompt.shape[1]
    if prompt is not None:
        x[:, :start] = prompt
    tau = torch.rand(n, 1, generator=generator)
    for d in range(start, len(conditionals)):
        x[:, d] = conditionals[d](x[:, :d], tau)[:, 0]
    return x


def prompt_ignored(conditionals, n, prompt=None, generator=None):
    x = torch.zeros(n, len(conditionals))
    for d in range(len(conditionals)):
        x[:, d] = conditionals[d](x[:, :d], torch.rand(n, 1, generator=generator))[:, 0]
    return x


def levels_for_the_prompt_too(conditionals, n, prompt=None, generator=None):
    x = torch.zeros(n, len(conditionals))
    taus = [torch.rand(n, 1, generator=generator) for _ in conditionals]  # C too many
    start = 0 if prompt is None else prompt.shape[1]
    if prompt is not None:
        x[:, :start] = prompt
    for d in range(start, len(conditionals)):
        x[:, d] = conditionals[d](x[:, :d], taus[d])[:, 0]
    return x


def global_rng(conditionals, n, prompt=None, generator=None):
    x = torch.zeros(n, len(conditionals))
    start = 0 if prompt is None else prompt.shape[1]
    if prompt is not None:
        x[:, :start] = prompt
    for d in range(start, len(conditionals)):
        x[:, d] = conditionals[d](x[:, :d], torch.rand(n, 1))[:, 0]
    return x


def test_aiqn_sample_checker(capsys):
    assert_passes(ex.check_aiqn_sample, solution("aiqn_sample"), capsys)
    assert_fails(ex.check_aiqn_sample, one_tau_for_all, capsys, "coordinate 2")
    assert_fails(ex.check_aiqn_sample, prompt_ignored, capsys, "prompt's coordinates changed")
    assert_fails(ex.check_aiqn_sample, levels_for_the_prompt_too, capsys, "prompt of")
    assert_fails(ex.check_aiqn_sample, global_rng, capsys, "global RNG")
    assert_stub_not_attempted(ex.check_aiqn_sample, "aiqn_sample", capsys)


# ------------------------------------------------------------------ exercise 5: AIQN loss


def _pinball(pred, target, tau):
    u = target - pred
    return torch.maximum(tau * u, (tau - 1) * u)


def swapped_levels(conditionals, x, tau):  # tau and 1 - tau exchanged
    parts = [
        _pinball(q(x[:, :d], tau[:, d]), x[:, d : d + 1], 1 - tau[:, d])
        for d, q in enumerate(conditionals)
    ]
    return torch.stack(parts, 1).mean()


def first_levels_only(conditionals, x, tau):  # the levels of coordinate 0 everywhere
    parts = [
        _pinball(q(x[:, :d], tau[:, 0]), x[:, d : d + 1], tau[:, 0])
        for d, q in enumerate(conditionals)
    ]
    return torch.stack(parts, 1).mean()


def sees_itself(conditionals, x, tau):  # the context includes x_d: not causal
    parts = [
        _pinball(q(x[:, : d + 1], tau[:, d]), x[:, d : d + 1], tau[:, d])
        for d, q in enumerate(conditionals)
    ]
    return torch.stack(parts, 1).mean()


def detached_first(conditionals, x, tau):  # right value, but coordinate 0 never trains
    parts = []
    for d, q in enumerate(conditionals):
        pred = q(x[:, :d], tau[:, d])
        parts.append(_pinball(pred.detach() if d == 0 else pred, x[:, d : d + 1], tau[:, d]))
    return torch.stack(parts, 1).mean()


def test_aiqn_loss_checker(capsys):
    assert_passes(ex.check_aiqn_loss, solution("aiqn_loss"), capsys)
    assert_fails(ex.check_aiqn_loss, swapped_levels, capsys, "expected")
    assert_fails(ex.check_aiqn_loss, first_levels_only, capsys, "expected")
    assert_fails(ex.check_aiqn_loss, sees_itself, capsys, "raised")
    assert_fails(ex.check_aiqn_loss, detached_first, capsys, "no gradient")
    assert_stub_not_attempted(ex.check_aiqn_loss, "aiqn_loss", capsys)
