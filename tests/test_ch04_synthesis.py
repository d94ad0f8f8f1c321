"""Chapter 4: the generated handwriting, stroke batching, and the handwriting-synthesis model."""

import numpy as np
import pytest
import torch

from arnb.data.handwriting import ALPHABET, generate_handwriting, load_handwriting, render_text
from arnb.data.stroke_batches import StrokeBatches, pad_strokes, prepare_strokes, stroke_scale
from arnb.distributions import check_strokes
from arnb.models.handwriting_synthesis import HandwritingSynthesis, encode_texts
from arnb.models.rnn_mdn import RNNMDN
from arnb.testing import assert_causal, dependency_matrix
from arnb.train import evaluate_nll

pytest.importorskip("HersheyFonts")


def test_handwriting_is_deterministic_under_a_seed():
    a, ta = generate_handwriting(20, seed=5)
    b, tb = generate_handwriting(20, seed=5)
    c, tc = generate_handwriting(20, seed=6)
    assert ta == tb
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert ta != tc or not all(np.array_equal(x, y) for x, y in zip(a, c))
    # the first n of a split do not depend on how many are asked for
    s5, t5 = load_handwriting("valid", 5)
    s9, t9 = load_handwriting("valid", 9)
    assert t5 == t9[:5] and all(np.array_equal(x, y) for x, y in zip(s5, s9))


def test_handwriting_is_valid_stroke3():
    strokes, texts = generate_handwriting(30, seed=0, max_words=2)
    for s, t in zip(strokes, texts):
        assert s.dtype == np.float32 and s.ndim == 2 and s.shape[1] == 3
        check_strokes(s)
        assert s[-1, 2] == 1  # the pen leaves the paper after the last point
        assert set(t) <= set(ALPHABET) and t.strip()
    # a word of k letters takes a few points per letter, not one and not hundreds
    lengths = np.array([len(s) / len(t) for s, t in zip(strokes, texts)])
    assert 4 < lengths.mean() < 30


def test_render_text_geometry():
    plain = render_text("hello")
    big = render_text("hello", scale=2.0)
    np.testing.assert_allclose(big[:, :2], 2 * plain[:, :2], rtol=1e-6, atol=1e-5)
    np.testing.assert_array_equal(big[:, 2], plain[:, 2])
    # a right slant moves the top of a letter to the right: the 'l' ascender tops are further right
    slanted = render_text("l", slant=0.5)
    top = lambda s: s[:, :2].cumsum(0)[np.argmin(s[:, :2].cumsum(0)[:, 1])]  # noqa: E731
    assert top(slanted)[0] > top(render_text("l"))[0]
    with pytest.raises(ValueError, match="rng"):
        render_text("hi", noise=0.1)
    with pytest.raises(ValueError, match="outside the alphabet"):
        render_text("héllo")
    with pytest.raises(ValueError, match="empty"):
        render_text("")


def test_stroke_preparation_and_batches():
    seqs = [
        np.array([[1.0, 2.0, 0.0], [3.0, -1.0, 1.0]], np.float32),
        np.array([[0.0, 4.0, 1.0]], np.float32),
        np.zeros((7, 3), np.float32),
    ]
    scale = stroke_scale(seqs)
    np.testing.assert_allclose(
        scale, np.concatenate([s[:, :2].ravel() for s in seqs]).std(), rtol=1e-6
    )
    prepared = prepare_strokes(seqs, scale, max_len=5)
    assert len(prepared) == 2  # the 7-point one is dropped
    np.testing.assert_allclose(prepared[0][:, :2], seqs[0][:, :2] / scale)
    x, mask = pad_strokes(prepared)
    assert x.shape == (2, 2, 3) and mask.tolist() == [[True, True], [True, False]]
    batches = StrokeBatches(prepared, batch_size=1, seed=0)
    assert sorted(b[0].shape[1] for b in batches) == [1, 2]  # each batch trimmed to its own length
    x0, cond = next(iter(StrokeBatches(prepared, batch_size=2, texts=["ab", "c"])))
    assert x0.shape == (2, 2, 3) and cond["mask"].sum() == 3 and sorted(cond["text"]) == ["ab", "c"]
    # the batches are what evaluate_nll and the models read: (x, conditioning)
    model = RNNMDN(hidden=4, components=2)
    want = model.log_prob(x, mask=mask).sum() / mask.sum()
    got = evaluate_nll(model, StrokeBatches(prepared, batch_size=1).in_order())
    assert abs(got["nats_per_dim"] + float(want.detach())) < 1e-5
    with pytest.raises(ValueError, match="sequence 1"):
        prepare_strokes([seqs[0], np.array([[0, 0, 3]], np.float32)], 1.0)
    with pytest.raises(ValueError, match="empty"):
        pad_strokes([np.zeros((0, 3), np.float32)])


def test_encode_texts_errors():
    ids, mask = encode_texts(["ab", "c"], "abc")
    assert ids.tolist() == [[0, 1], [2, 0]] and mask.tolist() == [[True, True], [True, False]]
    with pytest.raises(ValueError, match="does not know"):
        encode_texts(["aZ"], "abc")
    with pytest.raises(ValueError, match="empty"):
        encode_texts([""], "abc")


def small_synth():
    torch.manual_seed(0)
    return HandwritingSynthesis(alphabet="abc ", hidden=8, window_components=2, components=3)


def points(t, b=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t, 3, generator=g)
    x[..., 2] = (torch.rand(b, t, generator=g) < 0.3).float()
    return x


def test_synthesis_is_causal_in_the_strokes():
    model = small_synth()
    ids, tmask = model.encode(["abca"])
    dep = dependency_matrix(lambda z: model(z.view(1, 6, 3), text=(ids, tmask)), points(6)[0])
    assert_causal(dep.view(6, 6, 3).any(-1))


def test_synthesis_uses_the_text():
    model = small_synth()
    x = points(5, b=2)
    a = model.log_prob(x, text=["abc", "abc"])
    b = model.log_prob(x, text=["abc", "cab"])
    torch.testing.assert_close(model.log_prob(x, text="abc"), a)  # one text for every drawing
    assert a[0] == b[0] and a[1] != b[1]


def test_synthesis_log_prob_with_padding_matches_single():
    model = small_synth()
    x = points(6, b=2)
    mask = torch.tensor([[1] * 6, [1] * 3 + [0] * 3], dtype=torch.bool)
    both = model.log_prob(x, text=["ab", "cab a"], mask=mask)
    torch.testing.assert_close(both[0], model.log_prob(x[:1], text=["ab"])[0])
    torch.testing.assert_close(both[1], model.log_prob(x[1:, :3], text=["cab a"])[0])
    # NaN or 1e30 in the padding changes nothing, neither the value nor the gradients
    for junk in (float("nan"), 1e30):
        dirty = x.clone()
        dirty[1, 3:] = junk
        torch.testing.assert_close(model.log_prob(dirty, text=["ab", "cab a"], mask=mask), both)
        model.zero_grad()
        loss = model.nll(dirty, text=["ab", "cab a"], mask=mask)
        loss.backward()
        torch.testing.assert_close(loss, -both.sum() / 9)
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_synthesis_attention_and_sampling():
    model = small_synth()
    phi = model.attention(points(4), text=["ab"])
    assert phi.shape == (1, 4, 3) and torch.isfinite(phi).all() and (phi >= 0).all()
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    x, lengths, phis = model.sample_with_attention(3, text="abc", generator=g(), length=12)
    y = model.sample(3, text="abc", generator=g(), length=12)
    assert torch.equal(x, y) and x.shape == (3, 12, 3) and phis.shape == (3, 12, 4)
    assert torch.isfinite(x).all()
    for s, n in zip(x, lengths.tolist()):  # after the end: no move, pen up
        assert (s[n:] == torch.tensor([0.0, 0.0, 1.0])).all()
    prompt = points(2)[0]
    s = model.sample(2, text=["ab", "ca"], prompt=prompt, generator=g(), length=6)
    assert torch.equal(s[:, :2], prompt.expand(2, 2, 3))
    # the default length: 3 points_per_char per character
    assert model.sample(1, text="ab").shape == (1, int(3 * 11.5 * 2), 3)


def test_synthesis_bad_input():
    model = small_synth()
    with pytest.raises(ValueError, match="does not know"):
        model.log_prob(points(3), text=["abd"])
    with pytest.raises(ValueError, match="does not know"):
        model.sample(1, text="hello")
    with pytest.raises(ValueError, match="empty"):
        model.log_prob(points(3), text=[""])
    with pytest.raises(ValueError, match="one text per drawing"):
        model.log_prob(points(3, b=2), text=["ab"])
    with pytest.raises(ValueError, match="conditional"):
        model.log_prob(points(3))
    with pytest.raises(ValueError, match="conditional"):
        model.sample(1, length=3)
    with pytest.raises(ValueError, match="NaN or inf"):
        model.log_prob(torch.full((1, 2, 3), float("nan")), text=["a"])
    with pytest.raises(ValueError, match="last dimension"):
        model.log_prob(torch.zeros(1, 2, 4), text=["a"])
    with pytest.raises(TypeError):
        model.sample(1, None)  # keyword-only after n
    assert model.log_prob(torch.zeros(0, 3, 3), text=[]).shape == (0,)


def test_synthesis_sampler_steps_match_teacher_forcing():
    """The sampler's step-by-step path (window fed back, second LSTM one step at a time) gives the
    same conditional as the teacher-forced forward: the same random numbers draw the same point."""
    model = small_synth()
    x = points(6)
    drawn = model.sample(
        1, prompt=x[0, :5], text="abcabc", generator=torch.Generator().manual_seed(4), length=6
    )
    params = model.conditionals(x, text="abcabc").map(lambda v: v[:, 5])
    expected = params.sample(torch.Generator().manual_seed(4))
    torch.testing.assert_close(drawn[:, 5], expected, atol=1e-5, rtol=1e-5)
    phi_sampled = model.sample_with_attention(1, prompt=x[0], text="abcabc", length=6).phi
    torch.testing.assert_close(phi_sampled, model.attention(x, text="abcabc"), atol=1e-6, rtol=1e-5)


def test_synthesis_float64_round_trip():
    model = small_synth()
    x = points(4, b=2)
    lp = model.log_prob(x, text=["ab", "c"])
    model.double()
    lp64 = model.log_prob(x.double(), text=["ab", "c"])
    assert lp64.dtype == torch.float64
    torch.testing.assert_close(lp64.float(), lp, atol=1e-4, rtol=1e-5)
    assert model.sample(2, text="ab", length=5, generator=torch.Generator()).dtype == torch.float64
