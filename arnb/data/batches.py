"""The two ways the book feeds a model: shuffled mini-batches, and random windows of a text.

Both are seeded iterables that :func:`arnb.train.train` re-iterates when they run out.
(Truncated-BPTT streams live in :mod:`arnb.data.text`, padded strokes in
:mod:`arnb.data.stroke_batches`.)
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


class Minibatches:
    """Mini-batches of equally long tensors, reshuffled each epoch from a seeded generator.

    Iterating gives one epoch (the last, incomplete batch dropped); a single tensor yields
    tensors, several yield tuples. The data stay where they are (put them on the GPU once);
    ``dtype`` converts each batch of the first tensor (e.g. uint8 images stored compactly,
    returned as ``long``).
    """

    def __init__(
        self,
        *tensors: torch.Tensor,
        batch_size: int,
        seed: int = 0,
        dtype: torch.dtype | None = None,
    ):
        if not tensors:
            raise ValueError("Minibatches needs at least one tensor")
        n = len(tensors[0])
        if any(len(t) != n for t in tensors):
            raise ValueError(f"tensors differ in length: {[len(t) for t in tensors]}")
        if n == 0:
            raise ValueError("Minibatches got an empty data set")
        self.tensors, self.batch_size, self.dtype = tensors, min(batch_size, n), dtype
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.tensors[0]) // self.batch_size

    def __iter__(self) -> Iterator:
        perm = torch.randperm(len(self.tensors[0]), generator=self.generator)
        perm = perm.to(self.tensors[0].device)
        for i in range(0, len(perm) - self.batch_size + 1, self.batch_size):
            idx = perm[i : i + self.batch_size]
            batch = [t[idx] for t in self.tensors]
            if self.dtype is not None:
                batch[0] = batch[0].to(self.dtype)
            yield batch[0] if len(batch) == 1 else tuple(batch)


def random_windows(
    ids: torch.Tensor, batch_size: int, length: int, seed: int = 0
) -> Iterator[torch.Tensor]:
    """Endless ``(B, length)`` windows of the 1-D ``ids`` at random offsets.

    The ids stay on their device, so a batch costs one gather there and no host transfer.
    """
    if ids.dim() != 1 or len(ids) < length:
        raise ValueError(f"need a 1-D text of at least {length} ids, got shape {tuple(ids.shape)}")
    generator = torch.Generator().manual_seed(seed)
    offsets = torch.arange(length, device=ids.device)
    while True:
        start = torch.randint(len(ids) - length + 1, (batch_size,), generator=generator)
        yield ids[start.to(ids.device).unsqueeze(1) + offsets]
