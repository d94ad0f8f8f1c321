"""Pen strokes in stroke-3 format: rows ``(dx, dy, pen_lifted)``.

``pen_lifted = 1`` on a point means the pen leaves the paper *after* that point (sketch-rnn's
convention). The sketch-rnn ``.npz`` files hold object arrays, which ``numpy`` can only read by
unpickling; they are loaded from bytes whose sha256 has already been verified, then converted
to plain float32 arrays.
"""

from __future__ import annotations

import io

import numpy as np

from .files import RemoteFile, load_bytes

_SKETCH = "https://github.com/hardmaru/sketch-rnn-datasets/raw/master/"
SKETCH_FILES = {
    "omniglot": RemoteFile(
        "sketch-rnn/omniglot.npz",
        "bd5277621a8c577919491dfa729a59a8b5c216cff9e4fda9cef532db29f120c7",
        (_SKETCH + "omniglot/omniglot.npz",),
    ),
    "short_kanji": RemoteFile(
        "sketch-rnn/short_kanji.npz",
        "f6855ba03d58f44830499dd98e7cb99f46c970651f4f16f2d886398f34709914",
        (_SKETCH + "kanji/short_kanji.npz",),
    ),
}
SPLITS = ("train", "valid", "test")


def _rdp_keep(points: np.ndarray, epsilon: float) -> np.ndarray:
    """Ramer-Douglas-Peucker on one polyline ``(n, 2)``: a bool mask of the points to keep.

    The ends are kept; between two kept points, the point farthest from the segment joining
    them is kept too if it lies more than ``epsilon`` from it, and the two halves are split
    again. The distance is to the segment, not to the infinite line through it: a stroke that
    runs out and back along one line keeps its turning point. Iterative (a stack of index
    ranges), so a long stroke cannot exhaust Python's recursion.
    """
    keep = np.zeros(len(points), dtype=bool)
    keep[[0, -1]] = True
    stack = [(0, len(points) - 1)]
    while stack:
        a, b = stack.pop()
        if b - a < 2:
            continue
        inner = points[a + 1 : b] - points[a]
        chord = points[b] - points[a]
        length2 = float(chord @ chord)
        # the nearest point of the segment: the projection, clamped to the segment's ends
        t = np.clip(inner @ chord / length2, 0.0, 1.0) if length2 > 0 else np.zeros(len(inner))
        off = inner - t[:, None] * chord
        dist = np.hypot(off[:, 0], off[:, 1])
        i = int(np.argmax(dist))
        if dist[i] > epsilon:
            keep[a + 1 + i] = True
            stack += [(a, a + 1 + i), (a + 1 + i, b)]
    return keep


def simplify_strokes(seq: np.ndarray, epsilon: float) -> np.ndarray:
    """A stroke-3 drawing ``(L, 3)`` with each stroke simplified by Ramer-Douglas-Peucker.

    Within each stroke (the points up to a pen lift), points are dropped while every dropped
    point stays within ``epsilon`` (in the drawing's units) of the segment that replaces it.
    Each stroke's first and last points, and so every pen lift and every jump between strokes,
    are kept, and the moves still sum to the same end point. Returns ``(L', 3)`` float32,
    ``L' <= L``; ``epsilon = 0`` drops only points that lie on the segment between their kept
    neighbours.
    """
    seq = np.asarray(seq, dtype=np.float64)
    if seq.ndim != 2 or seq.shape[1] != 3 or len(seq) == 0:
        raise ValueError(f"a drawing must have shape (L, 3) with L >= 1, got {seq.shape}")
    if not (np.isfinite(epsilon) and epsilon >= 0):
        raise ValueError(f"epsilon must be finite and >= 0, got {epsilon}")
    points = np.cumsum(seq[:, :2], axis=0)  # positions
    ends = np.flatnonzero(seq[:, 2] == 1)
    if len(ends) == 0 or ends[-1] != len(seq) - 1:
        ends = np.append(ends, len(seq) - 1)  # an unfinished last stroke ends with the drawing
    keep = np.zeros(len(seq), dtype=bool)
    start = 0
    for end in ends:
        keep[start : end + 1] = _rdp_keep(points[start : end + 1], epsilon)
        start = end + 1
    kept = points[keep]
    moves = np.diff(kept, axis=0, prepend=np.zeros((1, 2)))
    return np.column_stack([moves, seq[keep, 2]]).astype(np.float32)


def load_sketch_strokes(name: str = "omniglot", split: str = "train") -> list[np.ndarray]:
    """Sequences from a sketch-rnn data set: a list of ``(L_i, 3)`` float32 arrays."""
    if name not in SKETCH_FILES:
        raise ValueError(f"unknown stroke data set {name!r}; have {sorted(SKETCH_FILES)}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    data = load_bytes(SKETCH_FILES[name])  # checksum verified before anything is unpickled
    with np.load(io.BytesIO(data), allow_pickle=True, encoding="latin1") as npz:
        seqs = npz[split]
    return [np.asarray(s, dtype=np.float32).reshape(-1, 3) for s in seqs]
