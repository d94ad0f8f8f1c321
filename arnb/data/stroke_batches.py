"""From lists of stroke-3 arrays to padded, normalised, masked batches for the RNN-MDN (chapter 4).

The steps, each a small function:

1. :func:`check_strokes` - reject what a density model must never see (NaN, inf, pen values
   other than 0/1, the wrong last dimension, empty sequences) with an error naming the problem.
2. :func:`stroke_scale` - one scale for both coordinates (the standard deviation of all moves of
   the *training* split), so that shapes keep their aspect ratio and the mixture's sigmas live on
   a scale near 1 whatever the data's units.
3. :func:`prepare_strokes` - drop sequences longer than a limit (not truncate: a cut character
   would be a different character), optionally dequantize integer coordinates, divide by the scale.
4. :func:`pad_strokes` and :class:`StrokeBatches` - pad to a common length with a mask that says
   which points are real; the loss sums over real points only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch


def check_strokes(x, mask: torch.Tensor | None = None, name: str = "strokes") -> None:
    """Raise a clear error unless ``x`` holds valid stroke-3 data.

    ``x`` is one sequence ``(L, 3)`` or a batch ``(B, L, 3)`` (array or tensor) of
    ``(dx, dy, pen_lifted)``: finite floats, pen exactly 0 or 1, at least one point. With ``mask
    (B, L)`` only the points it marks are checked, and every row must mark at least one.
    """
    t = torch.as_tensor(x)
    if t.dtype == torch.bool or t.dtype.is_complex:
        raise TypeError(f"{name} must be real numbers, got dtype {t.dtype}")
    if t.dim() not in (2, 3) or t.shape[-1] != 3:
        raise ValueError(
            f"{name} must have shape (L, 3) or (B, L, 3) with rows (dx, dy, pen_lifted); "
            f"got shape {tuple(t.shape)} (last dimension {t.shape[-1] if t.dim() else 'none'})"
        )
    if t.shape[-2] == 0 or t.numel() == 0:
        raise ValueError(f"{name} is an empty sequence: a drawing needs at least one point")
    t = t.reshape(-1, t.shape[-2], 3) if t.dim() == 3 else t.unsqueeze(0)
    if mask is not None:
        mask = torch.as_tensor(mask, dtype=torch.bool, device=t.device)
        if mask.shape != t.shape[:2]:
            raise ValueError(f"mask must have shape {tuple(t.shape[:2])}, got {tuple(mask.shape)}")
        if not mask.any(dim=1).all():
            raise ValueError(f"{name} has an empty sequence (a row whose mask marks no point)")
        t = t[mask]
    else:
        t = t.reshape(-1, 3)
    if not torch.isfinite(t).all():
        bad = (~torch.isfinite(t)).nonzero()[0].tolist()
        raise ValueError(f"{name} contains NaN or inf (first at point {bad[0]}, column {bad[1]})")
    pen = t[:, 2]
    if not ((pen == 0) | (pen == 1)).all():
        odd = pen[(pen != 0) & (pen != 1)][:3].tolist()
        raise ValueError(f"{name}: pen_lifted must be exactly 0 or 1, found {odd}")


def stroke_scale(seqs: Sequence[np.ndarray]) -> float:
    """The standard deviation of all ``(dx, dy)`` values of ``seqs`` pooled together (one number)."""
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
    """Pad ``seqs`` to ``(B, T, 3)`` float32 with zeros; return it and the mask ``(B, T)`` bool of real points."""
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


def encode_texts(texts: Sequence[str], alphabet: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Character ids ``(B, U)`` long (padded with 0) and mask ``(B, U)`` bool for ``texts``.

    Raises a clear error for an empty text or a character not in ``alphabet``.
    """
    if isinstance(texts, str):
        texts = [texts]
    if len(texts) == 0:
        raise ValueError("no texts given")
    index = {c: i for i, c in enumerate(alphabet)}
    for t in texts:
        if not isinstance(t, str):
            raise TypeError(f"texts must be strings, got {type(t).__name__}")
        if len(t) == 0:
            raise ValueError("a text is empty: give at least one character to write")
        unknown = sorted(set(t) - set(index))
        if unknown:
            raise ValueError(
                f"text {t!r} has characters the model does not know: {unknown}; "
                f"its alphabet is {alphabet!r}"
            )
    u = max(len(t) for t in texts)
    ids = torch.zeros(len(texts), u, dtype=torch.long)
    mask = torch.zeros(len(texts), u, dtype=torch.bool)
    for i, t in enumerate(texts):
        ids[i, : len(t)] = torch.tensor([index[c] for c in t])
        mask[i, : len(t)] = True
    return ids, mask


class StrokeBatches:
    """Shuffled mini-batches over a padded stroke set; each pass over it is one epoch.

    Yields ``(x (b, T_b, 3), mask (b, T_b))``, or with ``texts`` also ``(ids (b, U_b), text_mask)``;
    ``T_b`` is the longest sequence of the batch, so short batches cost less. The order comes from
    a seeded generator: the same seed gives the same batches.
    """

    def __init__(
        self,
        seqs: Sequence[np.ndarray],
        batch_size: int,
        seed: int = 0,
        texts: Sequence[str] | None = None,
        alphabet: str | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.x, self.mask = pad_strokes(seqs)
        self.lengths = self.mask.sum(1)
        self.text = None
        if texts is not None:
            if alphabet is None or len(texts) != len(seqs):
                raise ValueError("texts need an alphabet and one text per sequence")
            self.text = encode_texts(texts, alphabet)
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return (len(self.x) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        order = torch.randperm(len(self.x), generator=self.generator)
        for k in range(0, len(order), self.batch_size):
            yield self.select(order[k : k + self.batch_size])

    def select(self, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The batch of the sequences ``idx``, trimmed to their longest sequence (and text)."""
        t = int(self.lengths[idx].max())
        batch = (self.x[idx, :t], self.mask[idx, :t])
        if self.text is not None:
            ids, tmask = self.text[0][idx], self.text[1][idx]
            u = int(tmask.sum(1).max())
            batch = batch + (ids[:, :u], tmask[:, :u])
        return batch

    def in_order(self, batch_size: int | None = None) -> Iterator[tuple[torch.Tensor, ...]]:
        """All sequences in their stored order (for evaluation), in batches."""
        bs = batch_size or self.batch_size
        for k in range(0, len(self.x), bs):
            yield self.select(torch.arange(k, min(k + bs, len(self.x))))
