"""Ramer-Douglas-Peucker simplification of stroke-3 drawings (chapter 4's Omniglot)."""

import numpy as np
import pytest

from arnb.data import files, simplify_strokes
from arnb.distributions import check_strokes

needs_data = pytest.mark.skipif(
    files.data_dir() is None or not (files.data_dir() / "sketch-rnn").is_dir(),
    reason="set ARNB_DATA_DIR to the offline data folder (../shared/data)",
)


def positions(seq):
    return np.cumsum(np.asarray(seq, dtype=np.float64)[:, :2], axis=0)


def segment_distance(p, a, b):
    p, a, b = (np.asarray(v, dtype=np.float64) for v in (p, a, b))
    d = b - a
    if not d.any():
        return float(np.linalg.norm(p - a))
    t = min(1.0, max(0.0, float((p - a) @ d / (d @ d))))
    return float(np.linalg.norm(p - (a + t * d)))


def reference_rdp(points, epsilon):
    """The textbook recursion on a list of points: the kept points, in order."""
    if len(points) < 3:
        return list(points)
    dists = [segment_distance(p, points[0], points[-1]) for p in points[1:-1]]
    i = int(np.argmax(dists)) + 1
    if dists[i - 1] > epsilon:
        return reference_rdp(points[: i + 1], epsilon)[:-1] + reference_rdp(points[i:], epsilon)
    return [points[0], points[-1]]


def random_drawing(rng, strokes=3, points=12):
    rows = []
    for _ in range(strokes):
        moves = rng.normal(0.0, 10.0, size=(points, 2))  # continuous: no ties in distance
        pen = np.zeros(points)
        pen[-1] = 1
        rows.append(np.column_stack([moves, pen]))
    return np.vstack(rows).astype(np.float32)


def test_a_staircase_becomes_its_diagonal():
    steps = np.array([[6, 0, 0], [0, 6, 0]] * 10, dtype=np.float32)
    seq = np.vstack([[0, 0, 0], steps[:-1], [0, 6, 1]]).astype(np.float32)
    out = simplify_strokes(seq, 6.0)
    assert out.tolist() == [[0, 0, 0], [60, 60, 1]]
    # the outer corners stand 6 / sqrt(2) = 4.2 units off the diagonal: a smaller epsilon
    # keeps some of them
    assert len(simplify_strokes(seq, 4.0)) > 2


def test_matches_the_textbook_recursion_stroke_by_stroke():
    rng = np.random.default_rng(0)
    for eps in (0.0, 3.0, 6.0, 20.0):
        for _ in range(20):
            seq = random_drawing(rng)
            out = simplify_strokes(seq, eps)
            pos, lifts = positions(seq), np.flatnonzero(seq[:, 2] == 1)
            expected, start = [], 0
            for end in lifts:
                expected += reference_rdp([tuple(p) for p in pos[start : end + 1]], eps)
                start = end + 1
            np.testing.assert_allclose(positions(out), np.array(expected), atol=1e-4)


def test_keeps_pen_lifts_jumps_and_the_end_point():
    rng = np.random.default_rng(1)
    seq = random_drawing(rng, strokes=4, points=30)
    out = simplify_strokes(seq, 12.0)
    assert len(out) < len(seq)
    check_strokes(out)
    lifted_in, lifted_out = seq[:, 2] == 1, out[:, 2] == 1
    assert lifted_in.sum() == lifted_out.sum()
    # every stroke starts and ends where it did, so the jumps between strokes are unchanged
    np.testing.assert_allclose(positions(out)[lifted_out], positions(seq)[lifted_in], atol=1e-4)
    starts_in = np.r_[0, np.flatnonzero(lifted_in)[:-1] + 1]
    starts_out = np.r_[0, np.flatnonzero(lifted_out)[:-1] + 1]
    np.testing.assert_allclose(positions(out)[starts_out], positions(seq)[starts_in], atol=1e-4)


def test_every_dropped_point_lies_within_epsilon_of_the_segment_that_replaced_it():
    rng = np.random.default_rng(2)
    seq, eps = random_drawing(rng, strokes=1, points=60), 10.0
    pos, kept = positions(seq), positions(simplify_strokes(seq, eps))
    # kept points are original points, in order
    idx = [0]  # a random walk revisits positions: match each kept point after the last match
    for k in kept[1:]:
        later = np.all(np.isclose(pos[idx[-1] + 1 :], k, atol=1e-4), axis=1)
        idx.append(idx[-1] + 1 + int(np.flatnonzero(later)[0]))
    assert idx == sorted(idx) and idx[0] == 0 and idx[-1] == len(pos) - 1
    for a, b in zip(idx[:-1], idx[1:]):
        for p in pos[a + 1 : b]:
            assert segment_distance(p, pos[a], pos[b]) <= eps + 1e-6


def test_a_stroke_that_runs_out_and_back_keeps_its_turning_point():
    # out 60 units along a line and back to 10: every point lies on one line, but the turning
    # point is 50 units from the segment between the stroke's ends
    seq = np.array([[0, 0, 0]] + [[6, 0, 0]] * 10 + [[-6, 0, 0]] * 8 + [[-6, 0, 1]], np.float32)
    assert positions(simplify_strokes(seq, 6.0)).tolist() == [[0, 0], [60, 0], [6, 0]]


def test_a_closed_loop_and_a_single_point():
    square = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [-10, 0, 0], [0, -10, 1]], np.float32)
    assert simplify_strokes(square, 1.0).tolist() == square.tolist()  # corners are far apart
    assert len(simplify_strokes(square, 100.0)) == 2  # start and end, the same point
    dot = np.array([[3, 4, 1]], np.float32)
    assert simplify_strokes(dot, 6.0).tolist() == dot.tolist()


def test_bad_input_errors():
    with pytest.raises(ValueError, match="shape"):
        simplify_strokes(np.zeros((4, 2)), 1.0)
    with pytest.raises(ValueError, match="shape"):
        simplify_strokes(np.zeros((0, 3)), 1.0)
    with pytest.raises(ValueError, match="epsilon"):
        simplify_strokes(np.zeros((4, 3)), -1.0)
    with pytest.raises(ValueError, match="epsilon"):
        simplify_strokes(np.zeros((4, 3)), float("nan"))


@needs_data
def test_omniglot_loses_its_stairs_not_its_strokes():
    from arnb.chapters.ch04_rnn_mdn import load_omniglot
    from arnb.data import load_sketch_strokes

    raw, simple = load_sketch_strokes("omniglot", "valid"), load_omniglot("valid")
    assert len(raw) == len(simple)
    assert np.median([len(s) for s in simple]) < 0.8 * np.median([len(s) for s in raw])
    for r, s in zip(raw[:200], simple[:200]):
        check_strokes(s)
        assert (r[:, 2] == 1).sum() == (s[:, 2] == 1).sum()
        np.testing.assert_allclose(positions(s)[-1], positions(r)[-1], atol=1e-3)
