"""Cursive handwriting generated from the Hershey script fonts: a stroke data set with text labels.

Real on-line handwriting corpora (IAM-OnDB, used by Graves 2013) need a registration, so the book
makes its own: words rendered in the single-line Hershey script fonts of the ``hershey-fonts``
package, then distorted the way a hand would distort them, randomly and reproducibly:

- a **slant** (shear of x by height), a **scale**, an **aspect** ratio and a small **rotation**
  per word;
- **thinning**: a point is kept only once the pen has moved ``min_step`` font units from the last
  kept point (the font's own points are unevenly dense);
- **noise**: independent Gaussian jitter of every kept point (``noise`` font units), which also
  makes the coordinates continuous (the font's are integers, on which a density could cheat).

Output: stroke-3 ``(dx, dy, pen_lifted)`` float32 arrays (the sketch-rnn convention of
:mod:`arnb.data.strokes`: ``pen_lifted = 1`` means the pen leaves the paper *after* the point;
y points down; the first row is the move from the origin to the first point), plus the text.
Font units: the distance from the base line to the cap line is 21.

``HersheyFonts`` is imported inside the functions, so that the rest of :mod:`arnb` works on
machines without it.
"""

from __future__ import annotations

from functools import cache, lru_cache

import numpy as np

ALPHABET = "abcdefghijklmnopqrstuvwxyz "
"""Characters the generated texts use (lower-case letters and space)."""

FONTS = ("scripts", "cursive")
"""The single-line cursive fonts of ``hershey-fonts`` (``scriptc`` draws doubled lines: not
used)."""

SPLIT_SEEDS = {"train": 0, "valid": 1, "test": 2}
SPLIT_SIZES = {"train": 6000, "valid": 500, "test": 500}

# Short common English words: the synthesis model must learn to write each letter, and a word list
# keeps sequences short enough for a laptop. Every letter of the alphabet occurs.
WORDS = tuple(
    """
    a about after again air all also an and any are as ask at away back bad be been before big
    black blue book box boy but buy by call can car cat city cold come could cut day did do dog
    down draw each eat end even eye far fast few find fish fix five fly food for four fox from
    full fun game gave get girl give go gold good got great green had hand has have he help her
    here high him his home hot how ice idea if in into is it its job joy jump just keep key kind
    king know lake last late left less let life light like line little live long look lot love
    low made make man many may me mix more most much must my name near need never new next nice
    night no not now number of off old on once one only open or our out over own page paper part
    people place play put queen quick quiet quiz read red right river road room run said same saw
    say sea see seven she should show side six sky small so some song soon stop story sun take
    tell ten than that the them then there they thing think this three time to too top tree try
    two under up us use very view voice walk want warm was water way we well went were what when
    where which white who why wide will wind with word work world write year yellow yes you young
    your zero zip zoo
    """.split()
)


@cache
def _font(name: str):
    try:
        from HersheyFonts import HersheyFonts
    except ImportError as err:  # pragma: no cover - depends on the machine
        raise ImportError(
            "the handwriting data set needs the `hershey-fonts` package: pip install hershey-fonts"
        ) from err
    if name not in FONTS:
        raise ValueError(f"unknown font {name!r}; the handwriting generator uses {FONTS}")
    font = HersheyFonts()
    font.load_default_font(name)
    return font


def check_text(text: str, alphabet: str = ALPHABET) -> None:
    """Raise a clear error unless ``text`` is a non-empty string of characters in ``alphabet``."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if not text.strip():
        raise ValueError("text is empty: give at least one character to write")
    unknown = sorted(set(text) - set(alphabet))
    if unknown:
        raise ValueError(
            f"text {text!r} has characters outside the alphabet {alphabet!r}: {unknown}"
        )


def font_strokes(text: str, font: str = "scripts") -> list[np.ndarray]:
    """The pen-down polylines of ``text`` in a Hershey font: a list of ``(K, 2)`` float arrays.

    Polylines that start where the previous one ended are joined: in cursive the pen does not
    leave the paper there, so neither should the data's pen flag.
    """
    check_text(text)
    joined: list[list[tuple[float, float]]] = []
    for stroke in _font(font).strokes_for_text(text):
        pts = [tuple(map(float, p)) for p in stroke]
        if joined and joined[-1][-1] == pts[0]:
            joined[-1].extend(pts[1:])
        else:
            joined.append(pts)
    return [np.asarray(s, dtype=np.float64) for s in joined]


def _thin(points: np.ndarray, min_step: float) -> np.ndarray:
    """Keep the first and last point and every point at least ``min_step`` from the last kept
    one."""
    if min_step <= 0 or len(points) <= 2:
        return points
    keep = [0]
    for i in range(1, len(points) - 1):
        if np.hypot(*(points[i] - points[keep[-1]])) >= min_step:
            keep.append(i)
    if np.hypot(*(points[-1] - points[keep[-1]])) < 0.5 * min_step and len(keep) > 1:
        keep[-1] = len(points) - 1  # avoid a tiny last segment: move the last kept point to the end
    else:
        keep.append(len(points) - 1)
    return points[keep]


def to_stroke3(polylines: list[np.ndarray]) -> np.ndarray:
    """Absolute polylines ``[(K_s, 2), ...]`` -> stroke-3 ``(L, 3)`` float32 (pen lifted after
    each)."""
    if not polylines:
        raise ValueError("no polylines to convert")
    xy = np.concatenate(polylines)
    pen = np.concatenate([np.eye(1, len(p), len(p) - 1).ravel() for p in polylines])
    deltas = np.diff(xy, axis=0, prepend=np.zeros((1, 2)))
    return np.column_stack([deltas, pen]).astype(np.float32)


def render_text(
    text: str,
    font: str = "scripts",
    slant: float = 0.0,
    scale: float = 1.0,
    aspect: float = 1.0,
    rotation: float = 0.0,
    noise: float = 0.0,
    min_step: float = 2.5,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Write ``text`` once: a stroke-3 ``(L, 3)`` float32 array.

    ``slant`` shears x by height (positive leans right), ``scale`` and ``aspect`` (x only) stretch,
    ``rotation`` (radians) turns the word, ``noise`` (font units) jitters each kept point;
    ``rng`` draws the noise (required when ``noise > 0``).
    """
    if noise > 0 and rng is None:
        raise ValueError(
            "noise > 0 needs an rng (np.random.default_rng(seed)) so the result is reproducible"
        )
    c, s = np.cos(rotation), np.sin(rotation)
    # y points down in the font, so "up" is -y: a right lean moves x right as -y grows.
    linear = scale * np.array([[c, -s], [s, c]]) @ np.array([[aspect, -slant], [0.0, 1.0]])
    polylines = []
    for pts in font_strokes(text, font):
        pts = _thin(pts, min_step) @ linear.T
        if noise > 0:
            pts = pts + rng.normal(0.0, noise, size=pts.shape)
        polylines.append(pts)
    return to_stroke3(polylines)


def generate_handwriting(
    n: int,
    seed: int = 0,
    words: tuple[str, ...] = WORDS,
    max_words: int = 1,
    fonts: tuple[str, ...] = FONTS,
    slant: tuple[float, float] = (-0.15, 0.45),
    scale: tuple[float, float] = (0.85, 1.15),
    aspect: tuple[float, float] = (0.85, 1.15),
    rotation: tuple[float, float] = (-0.06, 0.06),
    noise: float = 0.3,
    min_step: float = 2.5,
) -> tuple[list[np.ndarray], list[str]]:
    """``n`` handwritten texts, the same for the same arguments: ``(strokes, texts)``.

    Each text is 1..``max_words`` words drawn uniformly from ``words``; each sample draws a font
    and its style parameters uniformly from the given ranges. ``strokes[i]`` is a ``(L_i, 3)``
    float32 stroke-3 array of ``texts[i]``.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    for w in words:
        check_text(w)
    rng = np.random.default_rng(seed)
    strokes, texts = [], []
    for _ in range(n):
        k = int(rng.integers(1, max_words + 1))
        text = " ".join(words[int(i)] for i in rng.integers(0, len(words), size=k))
        style = {
            "font": fonts[int(rng.integers(len(fonts)))],
            "slant": rng.uniform(*slant),
            "scale": rng.uniform(*scale),
            "aspect": rng.uniform(*aspect),
            "rotation": rng.uniform(*rotation),
        }
        strokes.append(render_text(text, noise=noise, min_step=min_step, rng=rng, **style))
        texts.append(text)
    return strokes, texts


def load_handwriting(
    split: str = "train", n: int | None = None
) -> tuple[list[np.ndarray], list[str]]:
    """The book's handwriting split: ``(strokes, texts)``, generated (no download), seeded per
    split.

    Splits share the word list but not the draws: ``train`` (6000 by default), ``valid`` and
    ``test`` (500 each) use seeds 0, 1 and 2. ``n`` asks for fewer (or more) samples; the first
    ``n`` samples of a split do not depend on how many are asked for.
    """
    if split not in SPLIT_SEEDS:
        raise ValueError(f"split must be one of {tuple(SPLIT_SEEDS)}, got {split!r}")
    strokes, texts = _cached_split(split, SPLIT_SIZES[split] if n is None else n)
    return [s.copy() for s in strokes], list(texts)


@lru_cache(maxsize=8)
def _cached_split(split: str, n: int) -> tuple[tuple[np.ndarray, ...], tuple[str, ...]]:
    # generating is pure Python (about 3000 words a second): a notebook asks for the same split
    # twice
    strokes, texts = generate_handwriting(n, seed=SPLIT_SEEDS[split])
    return tuple(strokes), tuple(texts)
