"""Text data: Tiny Shakespeare (90/10 split), GPT-2's published BPE files, and the
truncated-BPTT iterator over one long text (:class:`StreamBatches`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch

from .files import RemoteFile, fetch, load_bytes

TINY_SHAKESPEARE = RemoteFile(
    "tinyshakespeare/input.txt",
    "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
    ("https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",),
)

_GPT2 = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/"
GPT2_VOCAB_BPE = RemoteFile(
    "gpt2/vocab.bpe",
    "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    (_GPT2 + "vocab.bpe",),
)
GPT2_ENCODER_JSON = RemoteFile(
    "gpt2/encoder.json",
    "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    (_GPT2 + "encoder.json",),
)


def load_shakespeare() -> str:
    """The whole Tiny Shakespeare text (1,115,394 characters)."""
    return load_bytes(TINY_SHAKESPEARE).decode("utf-8")


def split_text(text: str, train_fraction: float = 0.9) -> tuple[str, str]:
    """The usual split: the first ``train_fraction`` of the characters train, the rest validate."""
    if not text:
        raise ValueError("empty text")
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    n = int(len(text) * train_fraction)
    return text[:n], text[n:]


def load_shakespeare_split() -> tuple[str, str]:
    """Tiny Shakespeare as ``(train, val)``: 1,003,854 and 111,540 characters."""
    return split_text(load_shakespeare())


def gpt2_bpe_files() -> tuple[Path, Path]:
    """Verified paths of GPT-2's ``vocab.bpe`` (merges) and ``encoder.json`` (token -> id)."""
    return fetch(GPT2_VOCAB_BPE), fetch(GPT2_ENCODER_JSON)


class StreamBatches:
    """Consecutive chunks of ``B`` parallel streams of one long text, for truncated BPTT.

    The text is cut into ``B`` streams (one per row); iterating yields ``(chunk (B, T), first)``
    where chunk ``k + 1`` of a row continues chunk ``k`` of the same row, so a model can carry
    its state from one to the next. ``first`` is True on the first chunk of an epoch: the model
    starts from a fresh state there. Each epoch starts the streams at a random offset (seeded),
    so the chunk boundaries move.
    """

    def __init__(self, ids: torch.Tensor, batch_size: int, chunk: int, seed: int = 0):
        if not isinstance(ids, torch.Tensor) or ids.dim() != 1:
            raise ValueError("ids must be a 1-D tensor")
        if batch_size < 1 or chunk < 1:
            raise ValueError(f"need batch_size >= 1 and chunk >= 1, got {batch_size}, {chunk}")
        self.stream_len = (len(ids) - chunk) // batch_size  # room for the random offset
        if self.stream_len < chunk:
            raise ValueError(
                f"text of {len(ids)} symbols too short for {batch_size} streams "
                f"of chunks of {chunk}"
            )
        self.ids, self.B, self.T = ids, batch_size, chunk
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.stream_len // self.T

    def __iter__(self) -> Iterator[tuple[torch.Tensor, bool]]:
        offset = int(torch.randint(0, self.T, (1,), generator=self.generator))
        n = len(self) * self.T
        starts = offset + torch.arange(self.B) * self.stream_len
        index = starts.unsqueeze(1) + torch.arange(n)
        streams = self.ids[index.to(self.ids.device)]  # (B, n)
        for k in range(len(self)):
            yield streams[:, k * self.T : (k + 1) * self.T], k == 0
