"""From lists of stroke-3 arrays to padded, normalised, masked batches for the RNN-MDN (chapter 4).

The steps, each a small function:

1. :func:`~arnb.distributions.check_strokes` - reject what a density model must never see (NaN,
   inf, pen values other than 0/1, the wrong last dimension, empty sequences) with an error
   naming the problem.
2. :func:`stroke_scale` - one scale for both coordinates (the standard deviation of all moves of
   the *training* split), so that shapes keep their aspect ratio and the mixture's sigmas live on
   a scale near 1 whatever the data's units.
3. :func:`prepare_strokes` - drop sequences longer than a limit (not truncate: a cut character
   would be a different character), optionally dequantize integer coordinates, divide by the scale.
4. :func:`pad_strokes` and :class:`StrokeBatches` - pad to a common length with a mask that says
   which points are real; the loss sums over real points only.

Batches come as ``(x, conditioning)``, the form :func:`arnb.train.evaluate_nll` and every
protocol model read: ``model.nll(x, **conditioning)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from ..distributions import check_strokes
from .batches import Minibatches


def stroke_scale(seqs: Sequence[np.ndarray]) -> float:
    """The standard deviation of all ``(dx, dy)`` values of ``seqs`` pooled together (one
    number)."""
    if len(seqs) == 0:
        raise ValueError("need at least one sequence to compute a scale")
    moves = np.concatenate([np.asarray(s, dtype=np.float64)[:, :2].ravel() for s in seqs])
    scale = float(moves.std())
    if not scale > 0:
        raise ValueError("all moves are zero: cannot normalise")
    return scale


def prepare_strokes(
    seqs: Sequence[np.ndarray],
    scale: float,
    max_len: int | None = None,
    dequantize: float = 0.0,
    seed: int = 0,
) -> list[np.ndarray]:
    """Checked, length-limited, normalised copies of ``seqs`` (list of ``(L, 3)`` float32 arrays).

    Sequences longer than ``max_len`` are dropped. ``dequantize = d > 0`` adds uniform noise on
    ``[-d/2, d/2)`` to dx and dy (seeded), turning integer coordinates into a continuous variable,
    so that a density cannot score unboundedly high by stacking mass on lattice points.
    """
    rng = np.random.default_rng(seed)
    seqs = [np.asarray(s, dtype=np.float32) for s in seqs]
    try:  # one check over everything; only on failure look for the sequence to blame
        if any(s.ndim != 2 or len(s) == 0 for s in seqs):
            raise ValueError
        check_strokes(np.concatenate(seqs))
    except (ValueError, TypeError):
        for i, s in enumerate(seqs):
            check_strokes(s, name=f"sequence {i}")
        raise
    out = []
    for s in seqs:
        if max_len is not None and len(s) > max_len:
            continue
        s = s.copy()
        if dequantize > 0:
            s[:, :2] += rng.uniform(-dequantize / 2, dequantize / 2, size=(len(s), 2)).astype(
                np.float32
            )
        s[:, :2] /= scale
        out.append(s)
    if not out:
        raise ValueError(f"no sequence is at most max_len={max_len} points long")
    return out


def pad_strokes(
    seqs: Sequence[np.ndarray], length: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad ``seqs`` to ``(B, T, 3)`` float32 with zeros; return it and the mask ``(B, T)`` bool
    of real points."""
    if len(seqs) == 0:
        raise ValueError("no sequences to pad")
    lengths = [len(s) for s in seqs]
    if min(lengths) == 0:
        raise ValueError(
            f"sequence {lengths.index(0)} is empty: a drawing needs at least one point"
        )
    t = length or max(lengths)
    x = torch.zeros(len(seqs), t, 3)
    mask = torch.zeros(len(seqs), t, dtype=torch.bool)
    for i, s in enumerate(seqs):
        n = min(len(s), t)
        x[i, :n] = torch.as_tensor(np.asarray(s[:n], dtype=np.float32))
        mask[i, :n] = True
    return x, mask


class StrokeBatches:
    """Shuffled mini-batches over a padded stroke set; each pass over it is one epoch.

    Yields ``(x (b, T_b, 3), {"mask": (b, T_b) bool})``, with ``texts`` also ``"text"``: the b
    strings the drawings show. ``T_b`` is the longest sequence of the batch, so short batches
    cost less. The order comes from :class:`~arnb.data.batches.Minibatches` over the sequence
    indices (seeded; the last incomplete batch of an epoch is dropped);
    :meth:`in_order` gives every sequence once, for evaluation.
    """

    def __init__(
        self,
        seqs: Sequence[np.ndarray],
        batch_size: int,
        seed: int = 0,
        texts: Sequence[str] | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.x, self.mask = pad_strokes(seqs)
        self.lengths = self.mask.sum(1)
        if texts is not None and len(texts) != len(seqs):
            raise ValueError(f"need one text per sequence: {len(texts)} for {len(seqs)}")
        self.texts = None if texts is None else list(texts)
        self.batch_size = batch_size
        self.order = Minibatches(torch.arange(len(self.x)), batch_size=batch_size, seed=seed)

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, dict]]:
        for idx in self.order:
            yield self.select(idx)

    def select(self, idx: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """The batch of the sequences ``idx``, trimmed to their longest sequence."""
        t = int(self.lengths[idx].max())
        cond = {"mask": self.mask[idx, :t]}
        if self.texts is not None:
            cond["text"] = [self.texts[i] for i in idx.tolist()]
        return self.x[idx, :t], cond

    def in_order(self, batch_size: int | None = None) -> Iterator[tuple[torch.Tensor, dict]]:
        """All sequences in their stored order (for evaluation), in batches."""
        bs = batch_size or self.batch_size
        for k in range(0, len(self.x), bs):
            yield self.select(torch.arange(k, min(k + bs, len(self.x))))
