"""Chapter 6: character and byte-level BPE tokenizers; GPT-2's files give tiktoken's ids."""

import random
import unicodedata

import pytest
import torch

from arnb.data import gpt2_bpe_files, load_shakespeare
from arnb.exercises.ch06 import check_bpe_merge
from arnb.tokenizers import (
    BPETokenizer,
    CharTokenizer,
    bytes_to_unicode,
    gpt2_split_regex,
    gpt2_tiktoken,
    merge,
    read_gpt2_files,
)

VARIED = [
    "Hello world! It's a test, isn't it? We'll see; they'd say you're 'right' and I'm sure.",
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n",
    "def f(x):\n    return x**2  # comment\n\tif x > 10_000: print(f'{x:,}')\n",
    "Numbers: 3.14159 1,000,000 2026-11-26 +44 (0)20 7946 0958 ½ ¾ ² Ⅻ ①",
    "Ünïcödé: naïve café résumé Straße ÆØÅ ﬁ Ελληνικά Русский текст עברית العربية",
    "中文字符 日本語のテキスト 한국어 텍스트 一二三万 ภาษาไทย हिन्दी",
    "emoji 🙂👍🏽👨‍👩‍👧‍👦 🇫🇷 ❤️ ✨ 🐍 and a flag 🏳️‍🌈!",
    "   leading spaces, trailing   \n\n\n  \t mixed \r\n whitespace \x0b\x0c end  ",
    "separators \x1c\x1d\x1e\x1f and controls \x00\x01\x7f and nbsp\xa0here\u2003em\u3000ideo",
    "'S 'LL 's's ''s CAPS'RE don't DON'T o'clock rock'n'roll",
    "URLs https://example.com/path?q=1&r=2#frag mail@example.org C:\\Windows\\",
    "combining: e\u0301 a\u0308 n\u0303; zero-width\u200bspace\u200d joiner; bidi \u202e abc",
    "!!! ??? ... --- *** ### $$$ %%% ^^^ &&& ((( ))) [[[ ]]] {{{ }}} ~~~ ``` |||",
    "<|endoftext|> looks special but here is plain text",
]


@pytest.fixture(scope="module")
def gpt2():
    return BPETokenizer.from_gpt2()


@pytest.fixture(scope="module")
def tiktoken_gpt2():
    """tiktoken's gpt2 encoding, built offline from the same verified local files."""
    pytest.importorskip("tiktoken")
    return gpt2_tiktoken()


@pytest.fixture(scope="module")
def trained():
    text = " ".join(VARIED[:4]) * 3
    return BPETokenizer.train(text, 256 + 60, special_tokens=["<|endoftext|>"])


def random_unicode(rng: random.Random, n: int) -> str:
    pools = [
        (0x20, 0x7E),
        (0xA0, 0x24F),
        (0x370, 0x3FF),
        (0x400, 0x4FF),
        (0x4E00, 0x4FFF),
        (0x1F300, 0x1F6FF),
        (0x300, 0x36F),
        (0x2000, 0x206F),
        (0x0, 0x1F),
    ]
    out = []
    for _ in range(n):
        a, b = rng.choice(pools)
        c = rng.randint(a, b)
        out.append(chr(c))
    return "".join(out)


# --------------------------------------------------------------------------- characters


def test_char_tokenizer_round_trip_and_unknown_characters():
    tok = CharTokenizer("hello world")
    assert tok.decode(tok.encode("hello")) == "hello"
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.encode("hello!")
    with pytest.raises(ValueError, match="empty text"):
        CharTokenizer("")


# --------------------------------------------------------------------------- pre-split


# Letters and digits that Unicode 15.0, 15.1 and 16.0 added: Python 3.11's `unicodedata`
# (Unicode 14) calls them unassigned, GPT-2's pattern under `regex` (and tiktoken) letters.
NEW_LETTERS = {
    0x1C89: "16.0 Cyrillic capital letter tje",
    0x1C8A: "16.0 Cyrillic small letter tje",
    0x11F04: "15.0 Kawi letter a",
    0x11F50: "15.0 Kawi digit zero",
    0x1E4D0: "15.0 Nag Mundari letter o",
    0x1E030: "15.0 modifier letter Cyrillic small a",
    0x31350: "15.0 CJK extension H",
    0x2EBF0: "15.1 CJK extension I",
    0x10D40: "16.0 Garay digit zero",
    0x10D50: "16.0 Garay capital letter",
    0x105C0: "16.0 Todhri letter a",
    0x11380: "16.0 Tulu-Tigalari letter a",
    0x16D43: "16.0 Kirat Rai letter",
    0x1E5D0: "16.0 Ol Onal letter",
    0x11BC0: "16.0 Sunuwar letter",
    0x16100: "16.0 Gurung Khema letter a",
    0x1CCF0: "16.0 outlined digit zero",
    0x13460: "16.0 Egyptian hieroglyph (extended A)",
}


def test_pre_split_knows_letters_newer_than_unicodedata():
    pat = gpt2_split_regex()
    assert pat.findall("\u1c89's") == ["\u1c89", "'s"]  # a letter, then the contraction
    assert pat.findall(" \U00011f50\U00011f50!") == [" \U00011f50\U00011f50", "!"]  # digits


def test_pre_split_is_lossless():
    pat = gpt2_split_regex()
    for text in VARIED:
        assert "".join(pat.findall(text)) == text


def test_merge_is_left_to_right_without_overlaps():
    assert merge([4, 4, 4], (4, 4), 8) == [8, 4]
    assert merge([1, 2, 1, 2, 5], (1, 2), 7) == [7, 7, 5]
    assert merge([], (1, 2), 7) == []
    assert check_bpe_merge(merge)  # the chapter's exercise accepts the library's merge


# --------------------------------------------------------------------------- training


def test_hand_worked_merges():
    """Wikipedia's BPE example: aaabdaaabac -> aa=Z -> ab=Y (tie with Za, smaller ids win) ->
    ZY=X."""
    tok = BPETokenizer.train("aaabdaaabac", 256 + 3, split=None)
    assert tok.merges == [(b"a", b"a"), (b"a", b"b"), (b"aa", b"ab")]
    assert [tok.vocab[i] for i in (256, 257, 258)] == [b"aa", b"ab", b"aaab"]
    ids = tok.encode("aaabdaaabac").tolist()
    assert ids == [258, ord("d"), 258, ord("a"), ord("c")]
    assert tok.decode(ids) == "aaabdaaabac"


def test_training_counts_are_frequency_weighted_and_stop_when_nothing_is_left():
    tok = BPETokenizer.train("ab ab ab cd", 256 + 50)
    # chunks "ab", " ab", " ab", " cd": the pair ab occurs 3 times, " a" twice
    assert tok.merges[:2] == [(b"a", b"b"), (b" ", b"ab")]
    assert len(tok.merges) < 50  # every chunk became one token before 50 merges
    assert tok.encode("ab ab cd").tolist() == [
        tok.encoder[b"ab"],
        tok.encoder[b" ab"],
        tok.encoder[b" cd"],
    ]


def test_encoding_replays_the_training_merges_in_order(trained):
    """Encoding (lowest rank first, per chunk) equals applying merge 0, 1, 2, ... in turn to
    every chunk, which is what training did to its text."""
    text = " ".join(VARIED[:4]) * 3
    want = []
    for chunk in trained.pre_split(text):
        ids = list(chunk.encode("utf-8"))  # a trained vocabulary gives byte b the id b
        for rank, (a, b) in enumerate(trained.merges):
            pair = (trained.encoder[a], trained.encoder[b])
            ids = merge(ids, pair, trained.encoder[a + b])
            assert trained.encoder[a + b] == 256 + rank
        want += ids
    assert trained.encode(text).tolist() == want
    assert len(want) < len(text.encode("utf-8")) * 0.75  # the merges did compress


def test_merges_never_cross_pre_split_boundaries(trained):
    for token in trained.vocab.values():
        text = token.decode("utf-8", "replace")
        # a letter followed by a space, or a letter followed by punctuation, would cross chunks
        assert not any(a.isalpha() and b == " " for a, b in zip(text, text[1:])), token


def test_trained_round_trip_arbitrary_unicode(trained):
    rng = random.Random(1)
    for text in VARIED[:-1] + [random_unicode(rng, 100) for _ in range(20)]:
        assert trained.decode(trained.encode(text)) == text


def test_special_tokens(trained):
    eot = trained.special_tokens["<|endoftext|>"]
    assert eot == trained.vocab_size - 1 == 256 + len(trained.merges)
    ids = trained.encode("one<|endoftext|>two", allowed_special="all").tolist()
    assert ids.count(eot) == 1
    assert trained.decode(ids) == "one<|endoftext|>two"
    with pytest.raises(ValueError, match="special token"):
        trained.encode("one<|endoftext|>two")
    assert eot not in trained.encode_ordinary("one<|endoftext|>two")
    with pytest.raises(ValueError, match="unknown special"):
        trained.encode("x", allowed_special={"<|pad|>"})


def test_invalid_utf8_bytes_round_trip(trained, gpt2):
    rng = random.Random(2)
    blobs = [b"\xff\xfe\x80abc\xc3", b"\xf0\x9f\x99", b"ok \xe2\x82 broken", bytes(range(256))]
    blobs += [bytes(rng.randrange(256) for _ in range(64)) for _ in range(10)]
    for tok in (trained, gpt2):
        for blob in blobs:
            assert tok.decode_bytes(tok.encode_ordinary(blob)) == blob
            assert tok.decode_bytes(tok.encode(blob)) == blob


def test_tokens_may_cut_through_a_character(gpt2):
    """An emoji spans several tokens; alone they are not valid UTF-8, together they are."""
    text = "🐍👨‍👩‍👧"
    ids = gpt2.encode(text).tolist()
    pieces = gpt2.token_bytes(ids)
    assert any(_invalid_utf8(p) for p in pieces)
    assert gpt2.decode(ids) == text
    assert "\ufffd" in gpt2.decode(ids[:1])  # a cut character decodes to U+FFFD, no exception


def _invalid_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return False
    except UnicodeDecodeError:
        return True


def test_encode_and_encode_ordinary_return_long_tensors(trained, gpt2):
    for tok in (trained, gpt2):
        for out in (tok.encode("a b"), tok.encode_ordinary("a b"), tok.encode(b"a b")):
            assert isinstance(out, torch.Tensor) and out.dtype == torch.long and out.dim() == 1
        assert torch.equal(tok.encode("a b"), tok.encode_ordinary("a b"))
        assert tok.encode("").shape == tok.encode_ordinary(b"").shape == (0,)
        assert tok.encode("", allowed_special="all").shape == (0,)
        assert tok.decode(tok.encode("a b").to(torch.int32)) == "a b"  # any integer dtype


def test_bad_input_errors(trained):
    with pytest.raises(ValueError, match="empty text"):
        BPETokenizer.train("", 300)
    with pytest.raises(ValueError, match="below 256"):
        BPETokenizer.train("abc", 200)
    with pytest.raises(ValueError, match="lone surrogate"):
        trained.encode("a\udc80b")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        trained.decode([10**6])
    with pytest.raises(TypeError, match="str or bytes"):
        trained.encode_ordinary(123)
    with pytest.raises(TypeError, match="str or bytes"):
        BPETokenizer.train(["abc"], 300)
    with pytest.raises(TypeError, match="integers"):
        trained.decode(torch.tensor([1.0, 2.0]))
    with pytest.raises(TypeError, match="integers"):
        trained.decode([1, 2.5])
    with pytest.raises(ValueError, match="1-D"):
        trained.decode(torch.tensor([[1, 2]]))
    with pytest.raises(TypeError, match="integers"):
        CharTokenizer("ab").decode(["a"])
    assert trained.encode("").tolist() == []


def test_gpt2_files_are_checked(tmp_path):
    vocab_bpe, encoder_json = gpt2_bpe_files()
    not_bpe = tmp_path / "vocab.bpe"
    not_bpe.write_text("a b\n", encoding="utf-8")
    with pytest.raises(ValueError, match="vocab.bpe"):
        read_gpt2_files(not_bpe, encoder_json)
    no_eot = tmp_path / "encoder.json"
    no_eot.write_text('{"a": 0}', encoding="utf-8")
    with pytest.raises(ValueError, match="endoftext"):
        read_gpt2_files(vocab_bpe, no_eot)


# --------------------------------------------------------------------------- GPT-2's files


def test_gpt2_vocabulary_size(gpt2):
    assert len(gpt2.merges) == 50_000
    assert gpt2.vocab_size == 50_257 == 256 + 50_000 + 1
    assert gpt2.special_tokens == {"<|endoftext|>": 50256}
    assert len(bytes_to_unicode()) == 256 and len(set(bytes_to_unicode().values())) == 256


def test_gpt2_ids_equal_tiktoken(gpt2, tiktoken_gpt2):
    rng = random.Random(3)
    shakespeare = load_shakespeare()
    corpus = VARIED + [random_unicode(rng, 120) for _ in range(20)]
    corpus += [shakespeare[i : i + 2000] for i in (0, 500_000, 1_100_000)]
    corpus.append(shakespeare[200_000:260_000])  # a long stretch: 60,000 characters
    for text in corpus:
        assert gpt2.encode_ordinary(text).tolist() == tiktoken_gpt2.encode_ordinary(text), text
        assert gpt2.decode(gpt2.encode_ordinary(text)) == text
    special = "Story one.<|endoftext|>Story two, with <|endoftext|> twice."
    assert gpt2.encode(special, allowed_special="all").tolist() == tiktoken_gpt2.encode(
        special, allowed_special="all"
    )
    with pytest.raises(ValueError):
        tiktoken_gpt2.encode(special)  # both refuse a special token that was not allowed
    with pytest.raises(ValueError, match="special token"):
        gpt2.encode(special)


@pytest.mark.parametrize("cp", sorted(NEW_LETTERS), ids=[f"U+{c:04X}" for c in sorted(NEW_LETTERS)])
def test_gpt2_ids_equal_tiktoken_on_unicode_15_and_16_letters(gpt2, tiktoken_gpt2, cp):
    c = chr(cp)
    for text in [f"{c}'s", f"x {c}{c}'s 7{c} {c}!", f"Hello {c}world, it's{c}{c} 42"]:
        assert gpt2.encode_ordinary(text).tolist() == tiktoken_gpt2.encode_ordinary(text), text
        assert gpt2.decode(gpt2.encode_ordinary(text)) == text
    if unicodedata.unidata_version.startswith("14."):  # Python 3.11: the case the fix is for
        assert unicodedata.category(c) == "Cn", NEW_LETTERS[cp]


def test_gpt2_unicode_16_letter_before_a_contraction(gpt2):
    """U+1C89 is a letter since Unicode 16: "\u1c89's" is the letter, then the token "'s" (338);
    a pattern built from Python 3.11's unicodedata cut it into ', s instead."""
    assert gpt2.encode("\u1c89's").tolist() == [157, 110, 231, 338]


def test_gpt2_known_ids(gpt2):
    """Two ids anyone can look up: 'Hello' = 15496, ' world' = 995."""
    assert gpt2.encode("Hello world").tolist() == [15496, 995]
