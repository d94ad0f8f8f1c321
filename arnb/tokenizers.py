"""Tokenizers: text <-> integer ids.

:class:`CharTokenizer` maps each distinct character of a training text to an id (chapters 2
and 6). :class:`BPETokenizer` is byte-level byte-pair encoding (chapter 6): trained from scratch
with GPT-2's pre-split, or loaded from GPT-2's published ``vocab.bpe`` and ``encoder.json`` to
give exactly GPT-2's ids.
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


# ================================================================================================
# Byte-level BPE (Sennrich et al. 2016; GPT-2, Radford et al. 2019)
#
# Text -> UTF-8 bytes, so every string (any language, emoji, even invalid UTF-8) is a sequence
# over an alphabet of 256 symbols and nothing is ever "unknown". Training repeatedly replaces the
# most frequent adjacent pair of symbols by a new symbol; encoding replays those merges, lowest
# rank first. A regex first cuts the text into chunks (words with their leading space, runs of
# digits, of punctuation, of whitespace) and merges never cross a chunk boundary, so "dog." and
# "dog!" share the token " dog" instead of spending vocabulary on every punctuation variant.
# ================================================================================================

# GPT-2's pre-split pattern, as published (it needs the third-party `regex` module for \p{..}).
GPT2_SPLIT_PATTERN_REGEX = (
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)

# Unicode White_Space, which is what `regex` (and tiktoken's Rust engine) mean by \s. Python's
# `re` \s differs: it also matches the four separators \x1c-\x1f (str.isspace is true for them).
_WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def _category_class(prefix: str) -> str:
    """A `re` character-class body of every code point whose general category starts with
    ``prefix`` ("L": letters, "N": numbers), as ranges of ``\\UXXXXXXXX`` escapes."""
    import unicodedata

    ranges, start, prev = [], None, None
    for cp in range(0x110000):
        if unicodedata.category(chr(cp)).startswith(prefix):
            if start is None:
                start = cp
            prev = cp
        elif start is not None:
            ranges.append((start, prev))
            start = None
    if start is not None:
        ranges.append((start, prev))
    return "".join(f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges)


_SPLIT_CACHE: dict[str, object] = {}


def gpt2_split_regex():
    """GPT-2's pre-split pattern compiled with Python's standard `re`.

    `re` has no ``\\p{L}`` / ``\\p{N}``, so the letter and number classes are spelled out from
    :mod:`unicodedata` (general categories L* and N*), and ``\\s`` is spelled out as Unicode
    White_Space. The result splits exactly like GPT-2's pattern under `regex`, except for
    characters assigned in a Unicode version newer than Python's own ``unicodedata`` (14.0 in
    Python 3.11), which `re` sees as unassigned. Built once (about a second), then cached.
    """
    if "gpt2" not in _SPLIT_CACHE:
        import re

        L, N, S = _category_class("L"), _category_class("N"), _WHITESPACE
        pattern = rf"""'s|'t|'re|'ve|'m|'ll|'d| ?[{L}]+| ?[{N}]+| ?[^{S}{L}{N}]+|[{S}]+(?![^{S}])|[{S}]+"""
        _SPLIT_CACHE["gpt2"] = re.compile(pattern)
    return _SPLIT_CACHE["gpt2"]


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable characters.

    ``encoder.json`` and ``vocab.bpe`` store tokens as text, so every byte needs a visible
    stand-in: printable Latin-1 bytes stand for themselves, the other 68 (control bytes, space,
    ...) are shifted to code points 256 and up. That is why GPT-2 tokens show a space as ``Ġ``.
    """
    keep = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    mapping, shift = {}, 0
    for b in range(256):
        if b in keep:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + shift)
            shift += 1
    return mapping


def _merge(word: list[int], pair: tuple[int, int], new: int) -> list[int]:
    """Replace every non-overlapping occurrence of ``pair`` in ``word``, left to right, by ``new``."""
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and word[i] == pair[0] and word[i + 1] == pair[1]:
            out.append(new)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


class BPETokenizer:
    """Byte-level byte-pair encoding: train from scratch, or load GPT-2's published files.

    A token is a byte string; ``vocab[id]`` gives it. ``merges`` lists the learned pairs in
    order: merge ``r`` joins the tokens ``merges[r]`` into one, and encoding applies the
    lowest-ranked applicable merge first, exactly as GPT-2 does. Special tokens (such as
    ``<|endoftext|>``) are whole strings with their own ids, never produced by merges.

    Build one with :meth:`train` or :meth:`from_gpt2`.
    """

    def __init__(
        self,
        vocab: dict[int, bytes],
        merges: list[tuple[bytes, bytes]],
        special_tokens: dict[str, int] | None = None,
        split: str | None = "gpt2",
    ):
        self.vocab = dict(vocab)
        self.encoder = {b: i for i, b in self.vocab.items()}
        if len(self.encoder) != len(self.vocab):
            raise ValueError("two ids share the same token bytes")
        missing = [bytes([b]) for b in range(256) if bytes([b]) not in self.encoder]
        if missing:
            raise ValueError(
                f"a byte-level vocabulary needs all 256 single bytes; missing {missing[:5]}"
            )
        self.merges = list(merges)
        self.ranks = {pair: r for r, pair in enumerate(self.merges)}
        for a, b in self.merges:
            if a + b not in self.encoder:
                raise ValueError(f"merge {a!r} + {b!r} makes a token that is not in the vocabulary")
        self.special_tokens = dict(special_tokens or {})
        clash = set(self.special_tokens.values()) & set(self.vocab)
        if clash:
            raise ValueError(f"special token ids {sorted(clash)[:5]} are also ordinary token ids")
        self.special_ids = {i: s for s, i in self.special_tokens.items()}
        if split not in (None, "gpt2"):
            raise ValueError(f"split must be 'gpt2' or None, got {split!r}")
        self.split = split
        self._cache: dict[bytes, list[int]] = {}

    # ------------------------------------------------------------------------------ sizes
    @property
    def vocab_size(self) -> int:
        """Number of ids: ordinary tokens plus special tokens (ids run from 0 to vocab_size - 1)."""
        return max([*self.vocab, *self.special_ids]) + 1

    def __repr__(self) -> str:
        return (
            f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
            f"special_tokens={list(self.special_tokens)})"
        )

    # ------------------------------------------------------------------------------ pre-split
    def pre_split(self, text: str) -> list[str]:
        """Cut text into the chunks that merges never cross (the whole text if ``split=None``)."""
        if self.split is None:
            return [text] if text else []
        return gpt2_split_regex().findall(text)

    # ------------------------------------------------------------------------------ training
    @classmethod
    def train(
        cls,
        text: str,
        vocab_size: int,
        special_tokens: list[str] | tuple[str, ...] = (),
        split: str | None = "gpt2",
        progress: bool = False,
    ) -> BPETokenizer:
        """Learn ``vocab_size - 256 - len(special_tokens)`` merges from ``text``.

        Each step merges the most frequent adjacent pair of tokens within the chunks; ties go to
        the pair with the smallest ids (bytes 0..255 first, then earlier merges), which makes the
        result deterministic. Special tokens get the last ids.
        """
        if not text:
            raise ValueError("cannot train BPE on empty text")
        num_merges = vocab_size - 256 - len(special_tokens)
        if num_merges < 0:
            raise ValueError(
                f"vocab_size={vocab_size} is below 256 bytes + {len(special_tokens)} special tokens"
            )
        probe = cls({i: bytes([i]) for i in range(256)}, [], split=split)
        counts: dict[bytes, int] = {}
        for chunk in probe.pre_split(text):
            key = chunk.encode("utf-8", "surrogatepass")
            counts[key] = counts.get(key, 0) + 1
        words = [list(w) for w in counts]  # each chunk as a list of byte ids
        freqs = list(counts.values())
        pair_counts: dict[tuple[int, int], int] = {}
        where: dict[tuple[int, int], set[int]] = {}  # pair -> chunks that (may) contain it
        for w, (word, f) in enumerate(zip(words, freqs)):
            for pair in zip(word, word[1:]):
                pair_counts[pair] = pair_counts.get(pair, 0) + f
                where.setdefault(pair, set()).add(w)
        vocab = {i: bytes([i]) for i in range(256)}
        merges = []
        steps = range(num_merges)
        if progress:
            from tqdm.auto import tqdm

            steps = tqdm(steps, desc="BPE merges", leave=False)
        for _ in steps:
            if not pair_counts:
                break  # every chunk is a single token: nothing left to merge
            pair = min(pair_counts, key=lambda p: (-pair_counts[p], p))
            new = len(vocab)
            vocab[new] = vocab[pair[0]] + vocab[pair[1]]
            merges.append((vocab[pair[0]], vocab[pair[1]]))
            # Only the chunks that contain the pair change: take their old pairs out, new ones in.
            for w in where.pop(pair, ()):
                word, f = words[w], freqs[w]
                merged = _merge(word, pair, new)
                if len(merged) == len(word):
                    continue
                for p in zip(word, word[1:]):
                    pair_counts[p] -= f
                    if pair_counts[p] == 0:
                        del pair_counts[p]
                for p in zip(merged, merged[1:]):
                    pair_counts[p] = pair_counts.get(p, 0) + f
                    where.setdefault(p, set()).add(w)
                words[w] = merged
            pair_counts.pop(pair, None)
        specials = {s: len(vocab) + k for k, s in enumerate(special_tokens)}
        return cls(vocab, merges, specials, split=split)

    # ------------------------------------------------------------------------------ GPT-2's files
    @classmethod
    def from_gpt2(cls, vocab_bpe=None, encoder_json=None) -> BPETokenizer:
        """GPT-2's tokenizer from its published ``vocab.bpe`` (merges) and ``encoder.json`` (ids).

        Without paths, the verified files of :func:`arnb.data.gpt2_bpe_files` are used. The result
        encodes any text to exactly the ids of GPT-2's tokenizer: 256 byte tokens, 50,000 merges
        and the special token ``<|endoftext|>`` = 50256, 50,257 ids in all.
        """
        import json
        from pathlib import Path

        if vocab_bpe is None or encoder_json is None:
            from .data import gpt2_bpe_files

            vocab_bpe, encoder_json = gpt2_bpe_files()
        byte_of = {c: b for b, c in bytes_to_unicode().items()}

        def to_bytes(token: str) -> bytes:
            try:
                return bytes(byte_of[c] for c in token)
            except KeyError as err:
                raise ValueError(f"{token!r} is not in GPT-2's byte alphabet") from err

        encoder = json.loads(Path(encoder_json).read_text(encoding="utf-8"))
        lines = Path(vocab_bpe).read_text(encoding="utf-8").split("\n")
        if not lines or not lines[0].startswith("#version"):
            raise ValueError(f"{vocab_bpe} does not look like a GPT-2 vocab.bpe file")
        merges = []
        for line in lines[1:]:
            if line.strip():
                a, b = line.split(" ")
                merges.append((to_bytes(a), to_bytes(b)))
        special = {"<|endoftext|>": encoder.pop("<|endoftext|>")}
        vocab = {i: to_bytes(tok) for tok, i in encoder.items()}
        return cls(vocab, merges, special, split="gpt2")

    # ------------------------------------------------------------------------------ encoding
    def _encode_chunk(self, chunk: bytes) -> list[int]:
        """BPE on one chunk: start from single bytes, apply the lowest-ranked merge until none applies."""
        cached = self._cache.get(chunk)
        if cached is not None:
            return cached
        parts = [bytes([b]) for b in chunk]
        while len(parts) > 1:
            ranked = [(self.ranks.get(pair, -1), k) for k, pair in enumerate(zip(parts, parts[1:]))]
            ranked = [(r, k) for r, k in ranked if r >= 0]
            if not ranked:
                break
            best = min(ranked)[0]
            a, b = self.merges[best]
            out, k = [], 0
            while k < len(parts):  # merge every occurrence of this pair, left to right
                if k + 1 < len(parts) and parts[k] == a and parts[k + 1] == b:
                    out.append(a + b)
                    k += 2
                else:
                    out.append(parts[k])
                    k += 1
            parts = out
        ids = [self.encoder[p] for p in parts]
        if len(self._cache) < 100_000:
            self._cache[chunk] = ids
        return ids

    def _encode_ordinary(self, text: str, errors: str) -> list[int]:
        ids: list[int] = []
        for chunk in self.pre_split(text):
            ids.extend(self._encode_chunk(chunk.encode("utf-8", errors)))
        return ids

    def encode_ordinary(self, text: str | bytes) -> list[int]:
        """Token ids of ``text``, treating special-token strings as ordinary text.

        ``bytes`` are accepted too, valid UTF-8 or not: they are read with ``surrogateescape``
        (each undecodable byte becomes a stand-in character) and written back byte for byte, so
        ``decode_bytes(encode_ordinary(b)) == b`` for every byte string.
        """
        if isinstance(text, bytes):
            return self._encode_ordinary(text.decode("utf-8", "surrogateescape"), "surrogateescape")
        if not isinstance(text, str):
            raise TypeError(f"text must be str or bytes, got {type(text).__name__}")
        try:
            return self._encode_ordinary(text, "strict")
        except UnicodeEncodeError as err:
            raise ValueError(
                f"text holds a lone surrogate {text[err.start]!r} at position {err.start}, which "
                "is not a character and has no UTF-8 bytes; pass the raw bytes instead"
            ) from None

    def encode(
        self, text: str | bytes, allowed_special: str | set[str] | frozenset = frozenset()
    ) -> torch.Tensor:
        """``text -> (n,)`` long ids. Like tiktoken, a special-token string in the text is an
        error unless it is in ``allowed_special`` (a set, or ``"all"``), then it becomes its id."""
        if allowed_special == "all":
            allowed = set(self.special_tokens)
        else:
            allowed = set(allowed_special)
            unknown = allowed - set(self.special_tokens)
            if unknown:
                raise ValueError(
                    f"unknown special tokens {sorted(unknown)}; have {list(self.special_tokens)}"
                )
        as_text = text.decode("utf-8", "surrogateescape") if isinstance(text, bytes) else text
        if not isinstance(as_text, str):
            raise TypeError(f"text must be str or bytes, got {type(text).__name__}")
        disallowed = [s for s in self.special_tokens if s not in allowed and s in as_text]
        if disallowed:
            raise ValueError(
                f"text contains the special token {disallowed[0]!r}; pass allowed_special="
                f"{{{disallowed[0]!r}}} to encode it as one token, or use encode_ordinary to "
                "encode it as plain text"
            )
        if not allowed:
            return torch.tensor(self.encode_ordinary(text), dtype=torch.long)
        import re

        pattern = "(" + "|".join(re.escape(s) for s in sorted(allowed, key=len, reverse=True)) + ")"
        ids: list[int] = []
        for k, piece in enumerate(re.split(pattern, as_text)):
            if k % 2:  # the separators re.split keeps are the special tokens
                ids.append(self.special_tokens[piece])
            elif piece:
                raw = piece.encode("utf-8", "surrogateescape") if isinstance(text, bytes) else piece
                ids.extend(self.encode_ordinary(raw))
        return torch.tensor(ids, dtype=torch.long)

    # ------------------------------------------------------------------------------ decoding
    def _ids(self, ids) -> list[int]:
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        bad = [i for i in ids if i not in self.vocab and i not in self.special_ids]
        if bad:
            raise ValueError(f"ids outside the vocabulary of {self.vocab_size}: {bad[:10]}")
        return ids

    def token_bytes(self, ids) -> list[bytes]:
        """The byte string of each id (a special token as its UTF-8 text)."""
        return [
            self.vocab[i] if i in self.vocab else self.special_ids[i].encode("utf-8")
            for i in self._ids(ids)
        ]

    def decode_bytes(self, ids) -> bytes:
        """ids -> the exact bytes they stand for."""
        return b"".join(self.token_bytes(ids))

    def decode(self, ids, errors: str = "replace") -> str:
        """ids -> text. A cut through a multi-byte character (a token boundary inside an emoji,
        say) is only invalid UTF-8 on its own; bytes that stay invalid become U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors)
