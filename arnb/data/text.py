"""Text data: Tiny Shakespeare (90/10 split) and GPT-2's published BPE files."""

from __future__ import annotations

from pathlib import Path

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
