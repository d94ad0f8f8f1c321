"""Chapter 5 exercises: each checker passes the notebook's own solution, fails typical wrong
answers, and says "not attempted yet" (one line) on the student stub."""

from pathlib import Path

import pytest
import torch

from arnb.exercises import ch05
from arnb.models.pixelcnn import causal_mask
from arnb.testing import exercise_answer

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "05_pixelcnn.ipynb"

pytestmark = pytest.mark.usefixtures("one_thread")


def solution(name):
    return exercise_answer(NOTEBOOK, name)


def assert_stub_not_attempted(check, name, capsys):
    capsys.readouterr()
    assert check(exercise_answer(NOTEBOOK, name, student=True)) is False
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "not attempted yet" in lines[0], lines


def assert_wrong(check, answer, capsys, says="not yet right"):
    capsys.readouterr()
    assert check(answer) is False
    assert says in capsys.readouterr().out


# -- exercise 1: the mask for the reverse order ---------------------------------------------


def test_reverse_mask(capsys):
    assert ch05.check_reverse_mask(solution("reverse_mask"))
    assert "correct" in capsys.readouterr().out
    # the raster mask itself, unchanged
    assert_wrong(ch05.check_reverse_mask, lambda k, t: causal_mask(1, 1, k, t)[0, 0], capsys)
    # only the rows reversed: bottom row first, but each row still left to right
    assert_wrong(
        ch05.check_reverse_mask, lambda k, t: causal_mask(1, 1, k, t)[0, 0].flip(0), capsys
    )
    # the centre kept for type A too
    assert_wrong(
        ch05.check_reverse_mask,
        lambda k, t: causal_mask(1, 1, k, "B")[0, 0].flip(0, 1),
        capsys,
    )
    assert_stub_not_attempted(ch05.check_reverse_mask, "reverse_mask", capsys)


# -- exercise 2: the colour rule for another order ------------------------------------------


def test_colour_mask(capsys):
    assert ch05.check_colour_mask(solution("colour_mask"))

    def rgb_always(order, t):  # ignores the order
        return torch.tril(torch.ones(3, 3), -1 if t == "A" else 0)

    def transposed(order, t):  # [in, out] instead of [out, in]
        return solution("colour_mask")(order, t).T

    def order_as_permutation(order, t):  # uses "the colour at position k" as a position
        pos = torch.tensor(["RGB".index(c) for c in order])
        p_out, p_in = pos.unsqueeze(1), pos.unsqueeze(0)
        return (p_in < p_out if t == "A" else p_in <= p_out).float()

    for wrong in (rgb_always, transposed, order_as_permutation):
        assert_wrong(ch05.check_colour_mask, wrong, capsys)
    assert_stub_not_attempted(ch05.check_colour_mask, "colour_mask", capsys)


# -- exercise 3: the blind spot -------------------------------------------------------------


def test_blind_spot(capsys):
    from arnb.models.pixelcnn import receptive_field

    assert ch05.check_blind_spot(solution("blind_spot"))

    def nothing_blind(model, i, j):
        return torch.zeros(model.config.height, model.config.width, dtype=torch.bool)

    def everything_unseen(model, i, j):  # forgets to look only at earlier pixels in reach
        return ~receptive_field(model, i, j)[0]

    def whole_row_in_reach(model, i, j):  # counts the pixel itself and its right as earlier
        r = model.config.reach
        seen = receptive_field(model, i, j)[0]
        box = torch.zeros_like(seen)
        box[max(0, i - r) : i + 1, max(0, j - r) : j + r + 1] = True
        return box & ~seen

    def left_of_it_unlimited(model, i, j):  # the whole row to the left, not only in reach
        right = solution("blind_spot")(model, i, j)
        left = torch.zeros_like(right)
        left[i, :j] = True
        return right | (left & ~receptive_field(model, i, j)[0])

    def row_left_out(model, i, j):  # only the rows above: misses the dilated model's holes
        spot = solution("blind_spot")(model, i, j).clone()
        spot[i] = False
        return spot

    for wrong in (nothing_blind, everything_unseen, whole_row_in_reach):
        assert_wrong(ch05.check_blind_spot, wrong, capsys)
    for wrong in (left_of_it_unlimited, row_left_out):
        assert not ch05.check_blind_spot(wrong)
        assert "dilated gated PixelCNN" in capsys.readouterr().out
    assert_wrong(ch05.check_blind_spot, lambda model, i, j: torch.zeros(3, 3), capsys)
    assert_stub_not_attempted(ch05.check_blind_spot, "blind_spot", capsys)


# -- exercise 4: the receptive field from the masks -----------------------------------------


def test_stack_field(capsys):
    right = solution("stack_field")
    assert ch05.check_stack_field(right)

    def mirrored(masks):  # convolution instead of cross-correlation: the field points down
        return right(masks).flip(0, 1)

    def union_of_masks(masks):  # overlays the kernels instead of chaining them
        R = sum(m.shape[0] // 2 for m in masks)
        S = sum(m.shape[1] // 2 for m in masks)
        field = torch.zeros(2 * R + 1, 2 * S + 1, dtype=torch.bool)
        for m in masks:
            kh, kw = m.shape
            field[R - kh // 2 : R + kh // 2 + 1, S - kw // 2 : S + kw // 2 + 1] |= m.bool()
        return field

    def keeps_earlier_fields(masks):  # adds each layer's shifts to the field it had
        R = sum(m.shape[0] // 2 for m in masks)
        S = sum(m.shape[1] // 2 for m in masks)
        field = torch.zeros(2 * R + 1, 2 * S + 1, dtype=torch.bool)
        field[R, S] = True
        for m in masks:
            ci, cj = m.shape[0] // 2, m.shape[1] // 2
            grown = field.clone()  # should start empty: the old field is not reachable
            for a, b in m.nonzero().tolist():
                grown |= field.roll((a - ci, b - cj), dims=(0, 1))
            field = grown
        return field

    for wrong in (mirrored, union_of_masks, keeps_earlier_fields):
        assert_wrong(ch05.check_stack_field, wrong, capsys)
    assert_stub_not_attempted(ch05.check_stack_field, "stack_field", capsys)


# -- exercise 5: bits per dimension ---------------------------------------------------------


def test_bits_per_dim(capsys):
    right = solution("bits_per_dim")
    assert ch05.check_bits_per_dim(right)

    def in_nats(logits, x):  # forgets ln 2
        return right(logits, x) * 0.6931471805599453

    def per_pixel(logits, x):  # divides by H * W, not by C * H * W
        return right(logits, x) * x.shape[1]

    def bernoulli_as_probability_of_one(logits, x):  # scores P(x = 1) whatever x is
        if logits.dim() == x.dim():
            return right(logits, torch.ones_like(x))
        return right(logits, x)

    for wrong in (in_nats, per_pixel, bernoulli_as_probability_of_one):
        assert_wrong(ch05.check_bits_per_dim, wrong, capsys)
    assert_stub_not_attempted(ch05.check_bits_per_dim, "bits_per_dim", capsys)


# -- exercise 6: the cropping sampler -------------------------------------------------------


def test_sample_cropped(capsys):
    right = solution("sample_cropped")
    assert ch05.check_sample_cropped(right)

    def naive(model, n, generator):  # right images, but every call sees the whole image
        return model.sample_naive(n, generator=generator)

    def no_right_side(model, n, generator):  # crops at column j: misses the upper right
        from arnb.sampling import sample_bernoulli, sample_categorical

        cfg, r = model.config, model.config.reach
        x = torch.zeros(n, cfg.channels, cfg.height, cfg.width, dtype=torch.long)
        with torch.no_grad():
            for i in range(cfg.height):
                top = max(0, i - r)
                for j in range(cfg.width):
                    left = max(0, j - r)
                    for c in range(cfg.channels):
                        raw = model.logits_from_float(
                            model.encode(x[:, :, top : i + 1, left : j + 1])
                        )
                        logits = raw[:, :, c, i - top, j - left]
                        if cfg.num_classes == 2:
                            x[:, c, i, j] = sample_bernoulli(logits[:, 0], generator)
                        else:
                            x[:, c, i, j] = sample_categorical(logits, generator)
        return x

    assert_wrong(ch05.check_sample_cropped, naive, capsys, says="saw")
    assert_wrong(ch05.check_sample_cropped, no_right_side, capsys, says="differ")
    assert_stub_not_attempted(ch05.check_sample_cropped, "sample_cropped", capsys)
