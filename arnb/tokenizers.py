"""Tokenizers: text <-> integer ids.

:class:`CharTokenizer` maps each distinct character of a training text to an id (chapters 2
and 6). :class:`BPETokenizer` is byte-level byte-pair encoding (chapter 6), in three parts:

- training, :func:`learn_merges` (behind :meth:`BPETokenizer.train`): learn merges from a text;
- GPT-2's files, :func:`read_gpt2_files` (behind :meth:`BPETokenizer.from_gpt2`): GPT-2's
  published merges and ids, which give exactly GPT-2's (and tiktoken's) ids;
- encoding and decoding, :class:`BPETokenizer` itself.

Training and encoding share one merge step, :func:`merge`. Every ``encode`` returns a ``(n,)``
long tensor of ids, and every ``decode`` takes a tensor or a sequence of ints.
"""

from __future__ import annotations

import json
import operator
from collections import Counter
from itertools import chain
from pathlib import Path

import numpy as np
import regex
import torch


def _id_list(ids) -> list[int]:
    """A 1-D tensor or a sequence of integers -> a list of Python ints (clear errors otherwise)."""
    if isinstance(ids, torch.Tensor):
        if ids.dtype == torch.bool or ids.is_floating_point() or ids.is_complex():
            raise TypeError(f"ids must be integers, got a tensor of {ids.dtype}")
        if ids.dim() != 1:
            raise ValueError(f"ids must be 1-D, got shape {tuple(ids.shape)}")
        return ids.tolist()
    try:
        return [operator.index(i) for i in ids]
    except TypeError:
        raise TypeError("ids must be a 1-D tensor or a sequence of integers") from None


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
        """ids (a 1-D tensor or a sequence of ints) -> str."""
        ids = _id_list(ids)
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

# GPT-2's pre-split pattern, as published. \p{L} (letters) and \p{N} (numbers) need the `regex`
# module, which GPT-2's own encoder used too.
GPT2_SPLIT_PATTERN_REGEX = (
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)
_GPT2_SPLIT = regex.compile(GPT2_SPLIT_PATTERN_REGEX)


def gpt2_split_regex() -> regex.Pattern:
    """GPT-2's pre-split pattern, compiled once with the `regex` module.

    `regex` carries its own Unicode tables, newer than Python's ``unicodedata`` (14.0 in Python
    3.11), so letters added in Unicode 15 and 16 (such as U+1C89) are letters here, as they are
    for GPT-2's encoder and tiktoken. For letters that are newer still (Unicode 17), `regex`
    may know them before tiktoken's tables do, and the two then split them differently.
    """
    return _GPT2_SPLIT


def merge(word: list[int], pair: tuple[int, int], new: int) -> list[int]:
    """``word`` with every occurrence of ``pair``, scanned left to right without overlaps,
    replaced by ``new``: ``merge([4, 4, 4], (4, 4), 8) == [8, 4]``.

    The one merge step of BPE: training applies it to every chunk holding the new pair,
    encoding applies it with the lowest-ranked pair of a chunk until no pair has a rank.
    """
    a, b = pair
    out, i, n = [], 0, len(word)
    while i < n:
        if word[i] == a and i + 1 < n and word[i + 1] == b:
            out.append(new)
            i += 2  # the pair is used up: its second symbol cannot start another one
        else:
            out.append(word[i])
            i += 1
    return out


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable characters.

    ``encoder.json`` and ``vocab.bpe`` store tokens as text, so every byte needs a visible
    stand-in: printable Latin-1 bytes stand for themselves, the other 68 (control bytes, space,
    ...) are shifted to code points 256 and up. That is why GPT-2 tokens show a space as ``Ġ``.
    """
    keep = {
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    }
    mapping, shift = {}, 0
    for b in range(256):
        if b in keep:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + shift)
            shift += 1
    return mapping


# ----------------------------------------------------------------------------- part 1: training
def learn_merges(
    chunks: dict[bytes, int], num_merges: int, progress: bool = False
) -> list[tuple[int, int]]:
    """Learn up to ``num_merges`` merges from chunk counts (``{chunk bytes: occurrences}``).

    Symbols are ids: bytes are 0..255 and merge ``r`` makes id ``256 + r`` from the returned
    pair ``r``. Each step merges the most frequent adjacent pair within the chunks, counting a
    chunk as often as it occurs; ties go to the pair with the smallest ids, which makes the
    result deterministic. Stops early when every chunk is a single symbol.
    """
    words = [list(chunk) for chunk in chunks]
    freqs = list(chunks.values())
    pair_counts: Counter[tuple[int, int]] = Counter()
    where: dict[tuple[int, int], set[int]] = {}  # pair -> chunks that (may) contain it
    for w, (word, f) in enumerate(zip(words, freqs)):
        for pair in zip(word, word[1:]):
            pair_counts[pair] += f
            where.setdefault(pair, set()).add(w)
    merges: list[tuple[int, int]] = []
    steps = range(num_merges)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="BPE merges", leave=False)
    for _ in steps:
        if not pair_counts:
            break  # every chunk is a single token: nothing left to merge
        pair = min(pair_counts, key=lambda p: (-pair_counts[p], p))
        new = 256 + len(merges)
        merges.append(pair)
        # Only the chunks that contain the pair change: take their old pairs out, new ones in.
        for w in where.pop(pair, ()):
            word, f = words[w], freqs[w]
            merged = merge(word, pair, new)
            if len(merged) == len(word):
                continue
            for p in zip(word, word[1:]):
                pair_counts[p] -= f
                if pair_counts[p] == 0:
                    del pair_counts[p]
            for p in zip(merged, merged[1:]):
                pair_counts[p] += f
                where.setdefault(p, set()).add(w)
            words[w] = merged
        pair_counts.pop(pair, None)
    return merges


# ------------------------------------------------------------------------ part 2: GPT-2's files
def read_gpt2_files(
    vocab_bpe, encoder_json
) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]], dict[str, int]]:
    """GPT-2's ``vocab.bpe`` (merges in rank order) and ``encoder.json`` (token -> id) as
    ``(vocab {id: bytes}, merges [(bytes, bytes)], special tokens {text: id})``.

    Both files spell each byte with its :func:`bytes_to_unicode` stand-in; this undoes that.
    """
    byte_of = {c: b for b, c in bytes_to_unicode().items()}

    def to_bytes(token: str) -> bytes:
        try:
            return bytes(byte_of[c] for c in token)
        except KeyError as err:
            raise ValueError(f"{token!r} is not in GPT-2's byte alphabet") from err

    encoder = json.loads(Path(encoder_json).read_text(encoding="utf-8"))
    lines = Path(vocab_bpe).read_text(encoding="utf-8").split("\n")
    if not lines[0].startswith("#version"):
        raise ValueError(f"{vocab_bpe} does not look like a GPT-2 vocab.bpe file")
    merges = []
    for line in lines[1:]:
        if line.strip():
            a, b = line.split(" ")
            merges.append((to_bytes(a), to_bytes(b)))
    if "<|endoftext|>" not in encoder:
        raise ValueError(f"{encoder_json} has no <|endoftext|> entry: not GPT-2's encoder.json")
    special = {"<|endoftext|>": encoder.pop("<|endoftext|>")}
    vocab = {i: to_bytes(token) for token, i in encoder.items()}
    return vocab, merges, special


def gpt2_tiktoken():
    """OpenAI's tiktoken ``gpt2`` encoding built offline from the same local files, the
    reference that tests and ``tools/bench_tokenizer.py`` compare :class:`BPETokenizer` with
    (``tiktoken.get_encoding("gpt2")`` would download them). Needs the ``tiktoken`` package."""
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    from .data import gpt2_bpe_files

    vocab_bpe, encoder_json = gpt2_bpe_files()
    return tiktoken.Encoding(
        "gpt2-offline",
        pat_str=GPT2_SPLIT_PATTERN_REGEX,
        mergeable_ranks=data_gym_to_mergeable_bpe_ranks(str(vocab_bpe), str(encoder_json)),
        special_tokens={"<|endoftext|>": 50256},
    )


# ----------------------------------------------------------------------------- part 3: encoding
_CACHE_LIMIT = 1 << 17  # chunks whose ids are remembered (a book has about 15,000 distinct ones)


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
        self._vocab_size = max([*self.vocab, *self.special_ids]) + 1

        # Encoding works on ids: a chunk starts as the ids of its bytes, and merge r turns the
        # id pair pairs[r] into id merged[r].
        e = self.encoder
        self._byte_ids = [e[bytes([b])] for b in range(256)]
        self._ranks = {(e[a], e[b]): r for r, (a, b) in enumerate(self.merges)}
        self._merged = [e[a + b] for a, b in self.merges]
        self._token_bytes = {**self.vocab, **{i: s.encode() for i, s in self.special_ids.items()}}
        self._cache: dict[str, list[int]] = {}

    @property
    def vocab_size(self) -> int:
        """Number of ids: ordinary tokens plus special tokens (ids run from 0 to vocab_size - 1)."""
        return self._vocab_size

    def __repr__(self) -> str:
        return (
            f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
            f"special_tokens={list(self.special_tokens)})"
        )

    # ------------------------------------------------------------------------------ builders
    @classmethod
    def train(
        cls,
        text: str,
        vocab_size: int,
        special_tokens: list[str] | tuple[str, ...] = (),
        split: str | None = "gpt2",
        progress: bool = False,
    ) -> BPETokenizer:
        """Learn ``vocab_size - 256 - len(special_tokens)`` merges from ``text`` (str, or bytes
        read as in :meth:`encode_ordinary`) with :func:`learn_merges`, fewer if the chunks run
        out of pairs. Special tokens get the last ids."""
        text = _as_text(text)
        if not text:
            raise ValueError("cannot train BPE on empty text")
        num_merges = vocab_size - 256 - len(special_tokens)
        if num_merges < 0:
            raise ValueError(
                f"vocab_size={vocab_size} is below 256 bytes + {len(special_tokens)} special tokens"
            )
        chunks = Counter(c.encode("utf-8", "surrogateescape") for c in _splitter(split)(text))
        vocab = {i: bytes([i]) for i in range(256)}
        merges = []
        for a, b in learn_merges(chunks, num_merges, progress):
            vocab[len(vocab)] = vocab[a] + vocab[b]
            merges.append((vocab[a], vocab[b]))
        specials = {s: len(vocab) + k for k, s in enumerate(special_tokens)}
        return cls(vocab, merges, specials, split=split)

    @classmethod
    def from_gpt2(cls, vocab_bpe=None, encoder_json=None) -> BPETokenizer:
        """GPT-2's tokenizer from its published ``vocab.bpe`` and ``encoder.json``.

        Without paths, the verified files of :func:`arnb.data.gpt2_bpe_files` are used. The result
        encodes any text to exactly the ids of GPT-2's tokenizer: 256 byte tokens, 50,000 merges
        and the special token ``<|endoftext|>`` = 50256, 50,257 ids in all.
        """
        if vocab_bpe is None or encoder_json is None:
            from .data import gpt2_bpe_files

            vocab_bpe, encoder_json = gpt2_bpe_files()
        return cls(*read_gpt2_files(vocab_bpe, encoder_json), split="gpt2")

    # ------------------------------------------------------------------------------ encoding
    def pre_split(self, text: str) -> list[str]:
        """Cut text into the chunks that merges never cross (the whole text if ``split=None``)."""
        return _splitter(self.split)(text)

    def _word_ids(self, word: str) -> list[int]:
        """Ids of one chunk: its byte ids, merged lowest rank first until no pair is a merge."""
        ids = self._cache.get(word)
        if ids is not None:
            return ids
        ids = [self._byte_ids[b] for b in word.encode("utf-8", "surrogateescape")]
        ranks = self._ranks
        while len(ids) > 1:
            candidates = [pair for pair in zip(ids, ids[1:]) if pair in ranks]
            if not candidates:
                break
            pair = min(candidates, key=ranks.__getitem__)
            ids = merge(ids, pair, self._merged[ranks[pair]])
        if len(self._cache) < _CACHE_LIMIT:
            self._cache[word] = ids
        return ids

    def _encode_text(self, text: str) -> np.ndarray:
        """Ids of text with no special tokens (already checked to have UTF-8 bytes)."""
        words = self.pre_split(text)
        # A long text repeats its words: run BPE once per distinct chunk, then look ids up.
        ids_of = {word: self._word_ids(word) for word in set(words)}
        return np.fromiter(chain.from_iterable(map(ids_of.__getitem__, words)), np.int64)

    def encode_ordinary(self, text: str | bytes) -> torch.Tensor:
        """``text -> (n,)`` long ids, treating special-token strings as ordinary text.

        ``bytes`` are accepted too, valid UTF-8 or not: they are read with ``surrogateescape``
        (each undecodable byte becomes a stand-in character) and written back byte for byte, so
        ``decode_bytes(encode_ordinary(b)) == b`` for every byte string.
        """
        return torch.from_numpy(self._encode_text(_as_text(text)))

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
        text = _as_text(text)
        disallowed = [s for s in self.special_tokens if s not in allowed and s in text]
        if disallowed:
            raise ValueError(
                f"text contains the special token {disallowed[0]!r}; pass allowed_special="
                f"{{{disallowed[0]!r}}} to encode it as one token, or use encode_ordinary to "
                "encode it as plain text"
            )
        if not allowed:
            return torch.from_numpy(self._encode_text(text))
        longest_first = sorted(allowed, key=len, reverse=True)
        pieces = regex.split("(" + "|".join(map(regex.escape, longest_first)) + ")", text)
        parts = [
            np.array([self.special_tokens[piece]]) if k % 2 else self._encode_text(piece)
            for k, piece in enumerate(pieces)  # split keeps the separators at odd places
        ]
        return torch.from_numpy(np.concatenate(parts).astype(np.int64))

    # ------------------------------------------------------------------------------ decoding
    def token_bytes(self, ids) -> list[bytes]:
        """The byte string of each id (a special token as its UTF-8 text)."""
        ids = _id_list(ids)
        bad = [i for i in ids if i not in self._token_bytes]
        if bad:
            raise ValueError(f"ids outside the vocabulary of {self.vocab_size}: {bad[:10]}")
        return [self._token_bytes[i] for i in ids]

    def decode_bytes(self, ids) -> bytes:
        """ids -> the exact bytes they stand for."""
        return b"".join(self.token_bytes(ids))

    def decode(self, ids, errors: str = "replace") -> str:
        """ids -> text. A cut through a multi-byte character (a token boundary inside an emoji,
        say) is only invalid UTF-8 on its own; bytes that stay invalid become U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors)


def _splitter(split: str | None):
    """The pre-split function: GPT-2's pattern, or the whole text as one chunk."""
    if split == "gpt2":
        return _GPT2_SPLIT.findall
    return lambda text: [text] if text else []


def _as_text(text: str | bytes) -> str:
    """str as it is (after checking it has UTF-8 bytes); bytes read with ``surrogateescape``."""
    if isinstance(text, bytes):
        return text.decode("utf-8", "surrogateescape")
    if not isinstance(text, str):
        raise TypeError(f"text must be str or bytes, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(
            f"text holds a lone surrogate {text[err.start]!r} at position {err.start}, which "
            "is not a character and has no UTF-8 bytes; pass the raw bytes instead"
        ) from None
    return text
