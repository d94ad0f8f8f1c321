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
