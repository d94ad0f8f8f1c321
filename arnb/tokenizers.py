"""Tokenizers: text <-> integer ids.

:class:`CharTokenizer` maps each distinct character of a training text to an id (chapters 2
and 6). Byte-level BPE follows in chapter 6.
"""

from __future__ import annotations

import torch


class CharTokenizer:
    """One id per character seen in ``text``; ids follow the sorted order of the characters."""

    def __init__(self, text: str):
        if not text:
            raise ValueError("cannot build a character vocabulary from empty text")
        self.chars = sorted(set(text))
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> torch.Tensor:
        """``str -> (len(text),)`` long ids; an unknown character is a clear error."""
        try:
            return torch.tensor([self.stoi[c] for c in text], dtype=torch.long)
        except KeyError:
            unknown = sorted({c for c in text if c not in self.stoi})
            raise ValueError(
                f"characters outside the vocabulary of {self.vocab_size}: {unknown[:10]!r}"
            ) from None

    def decode(self, ids) -> str:
        """ids (a tensor or a sequence of ints) -> str."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"ids outside [0, {self.vocab_size - 1}]: {bad[:10]}")
        return "".join(self.chars[i] for i in ids)
