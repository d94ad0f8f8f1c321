"""n-gram language models from counts: add-k smoothing and interpolated Kneser-Ney.

The Markov assumption cuts the growing condition of ``p(x_i | x_<i)`` down to the last
``order - 1`` symbols, so the whole model is a table of counts. Two ways to turn counts into
probabilities that never give zero to an unseen continuation:

- **add-k**: ``p(w | h) = (c(h w) + k) / (c(h) + k K)``, using only the longest context;
- **interpolated Kneser-Ney** {cite}`kneser1995,chen1999`: subtract a discount ``D`` from every
  seen count and give the mass freed to a lower-order distribution. The lower orders are built
  from *continuation counts* ``N1+(. h w)`` (in how many different contexts a string occurs)
  instead of raw counts, because they matter most where the longer context is rare: every
  order contributes, but a rare context leaves more mass to the lower orders.

Counting is vectorised: an m-gram over ``K`` symbols is the integer ``sum_j a_j K^(m-1-j)``
(the first symbol most significant), so all m-grams of a text come from one rolling
multiply-add, ``np.unique`` sorts and counts them, and a look-up is one ``np.searchsorted``.
Order 6 on a million characters fits in about a second.

The model holds no parameters, only counts (NumPy arrays, on the CPU), but it is an
:class:`~arnb.protocol.ARModule` like every other model: ``log_prob`` scores every symbol (the
first ones through the shorter contexts of a padded history), results come back in the model's
dtype and on its device (float32 by default, float64 after ``.double()``; the arithmetic is
float64 inside either way), and ``nll`` is the mean nats per symbol.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..validation import as_indices, validation
from .sequence import SequenceLM

SMOOTHINGS = ("kneser-ney", "add-k")


@dataclass
class _OrderTable:
    """Counts of one order m: m-grams ``hw`` and their contexts ``h`` (length m-1), sorted codes."""

    gram_codes: np.ndarray  # (G,) int64, sorted
    gram_counts: np.ndarray  # (G,) float64: raw counts, or continuation counts for KN lower orders
    ctx_codes: np.ndarray  # (H,) int64, sorted
    ctx_total: np.ndarray  # (H,) float64: sum_w count(h w)
    ctx_nk: np.ndarray  # (H, 3) float64: number of w with count(h w) == 1, == 2, >= 3


def _lookup(sorted_codes: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of each ``query`` code in ``sorted_codes`` and whether it was found."""
    idx = np.searchsorted(sorted_codes, query)
    idx = np.minimum(idx, len(sorted_codes) - 1)
    found = sorted_codes[idx] == query
    return idx, found


def _table(codes: np.ndarray, counts: np.ndarray, vocab_size: int) -> _OrderTable:
    """Group sorted m-gram codes by their context ``code // K`` (contiguous because sorted)."""
    ctx = codes // vocab_size
    ctx_codes, start = np.unique(ctx, return_index=True)
    counts = counts.astype(np.float64)
    total = np.add.reduceat(counts, start)
    nk = np.stack(
        [
            np.add.reduceat((counts == 1).astype(np.float64), start),
            np.add.reduceat((counts == 2).astype(np.float64), start),
            np.add.reduceat((counts >= 3).astype(np.float64), start),
        ],
        axis=1,
    )
    return _OrderTable(codes, counts, ctx_codes, total, nk)


def ngram_codes(ids: np.ndarray, m: int, vocab_size: int) -> np.ndarray:
    """Integer codes of all ``len(ids) - m + 1`` m-grams of ``ids`` (first symbol most
    significant)."""
    ids = np.asarray(ids, dtype=np.int64)
    if vocab_size**m >= 2**63:
        raise ValueError(f"{vocab_size}**{m} m-gram codes do not fit in int64; lower the order")
    codes = ids.copy()
    for j in range(1, m):
        codes = codes[:-1] * vocab_size + ids[j:]
    return codes


def count_distinct(ids: np.ndarray | torch.Tensor, length: int, vocab_size: int) -> int:
    """How many distinct substrings of ``length`` symbols ``ids`` contains."""
    ids = np.asarray(torch.as_tensor(ids).cpu(), dtype=np.int64)
    if length > len(ids):
        return 0
    return len(np.unique(ngram_codes(ids, length, vocab_size)))


def unseen_fraction(train_ids, val_ids, length: int, vocab_size: int) -> float:
    """Fraction of the length-``length`` substrings of ``val_ids`` that never occur in
    ``train_ids``."""
    train = np.unique(ngram_codes(np.asarray(torch.as_tensor(train_ids)), length, vocab_size))
    val = ngram_codes(np.asarray(torch.as_tensor(val_ids)), length, vocab_size)
    if len(val) == 0:
        return 0.0
    _, found = _lookup(train, val)
    return float(1.0 - found.mean())


def _ids(ids: torch.Tensor, vocab_size: int, name: str, shape=None) -> np.ndarray:
    """Integer ids (any integer dtype, checked by :mod:`arnb.validation`) as int64 NumPy."""
    return as_indices(ids, vocab_size, shape, name=name).detach().cpu().numpy()


class NGramLM(SequenceLM):
    """An order-``order`` Markov model over ``vocab_size`` symbols, estimated from counts.

    ``smoothing="kneser-ney"`` (interpolated, with discounts D1, D2, D3+ per order: "modified"
    Kneser-Ney of Chen and Goodman) or ``"add-k"`` (pseudo-count ``k``).
    ``discount``: ``None`` estimates D1, D2, D3+ of every order from the count-of-counts
    (Chen and Goodman's formula); a float uses one discount everywhere; a tuple gives one entry
    per order 1..order, each a float or a triple ``(D1, D2, D3+)``.

    A context shorter than ``order - 1`` (the start of a sequence) uses the orders it can fill:
    an empty context gets the lowest-order distribution. The ``state`` of
    :meth:`token_log_probs` is the last ``order - 1`` symbols read.
    """

    sequence_chunk = 1 << 18  # counts, not a network: score a long text in few NumPy passes

    def __init__(
        self,
        order: int,
        vocab_size: int,
        smoothing: str = "kneser-ney",
        discount: float | tuple | None = None,
        k: float = 1.0,
    ):
        super().__init__()
        if not isinstance(order, int) or order < 1:
            raise ValueError(f"order must be an integer >= 1, got {order!r}")
        if vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2, got {vocab_size}")
        if vocab_size**order >= 2**63:
            raise ValueError(f"order {order} over {vocab_size} symbols overflows int64 codes")
        if smoothing not in SMOOTHINGS:
            raise ValueError(f"smoothing must be one of {SMOOTHINGS}, got {smoothing!r}")
        if smoothing == "add-k" and not k > 0:
            raise ValueError(f"add-k smoothing needs k > 0, got {k}")
        self.order, self.vocab_size, self.smoothing, self.k = order, vocab_size, smoothing, float(k)
        self._discount_arg = discount
        self.tables: list[_OrderTable] = []  # index m-1 for order m
        self.discounts: np.ndarray | None = None  # (order, 3)
        self.num_tokens = 0
        # no parameters: this buffer carries the model's dtype and device (.double(), .to())
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    # ------------------------------------------------------------------ fitting
    def fit(self, ids: torch.Tensor) -> NGramLM:
        """Count all m-grams (m = 1..order) of the 1-D ``ids``; returns ``self``."""
        if isinstance(ids, torch.Tensor) and ids.dim() != 1:
            raise ValueError(f"fit expects a 1-D tensor of ids, got shape {tuple(ids.shape)}")
        with validation(True):  # counts of ids out of range would be silently wrong: always check
            x = _ids(ids, self.vocab_size, "training ids")
        if len(x) == 0:
            raise ValueError("training ids is empty: an n-gram model needs at least one symbol")
        n, K = self.order, self.vocab_size
        self.num_tokens = len(x)
        raw_codes, raw_counts = [], []
        codes = x.copy()
        for m in range(1, n + 1):
            if m > 1:
                codes = codes[:-1] * K + x[m - 1 :]
            u, c = np.unique(codes, return_counts=True)
            raw_codes.append(u)
            raw_counts.append(c)
        if self.smoothing == "add-k":
            self.tables = [_table(raw_codes[m], raw_counts[m], K) for m in range(n)]
        else:
            tables = [None] * n
            tables[n - 1] = _table(raw_codes[n - 1], raw_counts[n - 1], K)
            for m in range(n - 1, 0, -1):
                # continuation count of an m-gram: the number of distinct (m+1)-grams ending in it
                suffixes = raw_codes[m] % (K**m)
                u, c = np.unique(suffixes, return_counts=True)
                tables[m - 1] = _table(u, c, K)
            self.tables = tables
            self.discounts = self._resolve_discounts(self._discount_arg)
        return self

    def estimated_discounts(self) -> np.ndarray:
        """Chen and Goodman's estimates ``(order, 3)`` of D1, D2, D3+ from the count-of-counts."""
        self._check_fitted()
        out = np.empty((self.order, 3))
        for m, t in enumerate(self.tables):
            nc = [float((t.gram_counts == j).sum()) for j in (1, 2, 3, 4)]
            if nc[0] == 0 or nc[1] == 0:
                out[m] = (0.5, 1.0, 1.5)
                continue
            y = nc[0] / (nc[0] + 2 * nc[1])
            d = [
                1 - 2 * y * nc[1] / nc[0],
                2 - 3 * y * nc[2] / nc[1],
                3 - 4 * y * nc[3] / nc[2] if nc[2] > 0 else 1.5,
            ]
            out[m] = np.clip(d, 0.05, [1.0, 2.0, 3.0])
        return out

    def _resolve_discounts(self, discount) -> np.ndarray:
        if discount is None:
            d = self.estimated_discounts()
        elif np.isscalar(discount):
            d = np.full((self.order, 3), float(discount))
        else:
            if len(discount) != self.order:
                raise ValueError(
                    f"discount needs one entry per order (1..{self.order}), got {len(discount)}"
                )
            d = np.array([np.broadcast_to(np.asarray(e, dtype=np.float64), (3,)) for e in discount])
        self.set_discounts(d)
        return self.discounts

    def set_discounts(self, d) -> None:
        """Replace the ``(order, 3)`` discounts (counts stay; used for tuning on held-out text)."""
        d = np.array(d, dtype=np.float64).reshape(self.order, 3)
        # 0 < D_c <= c keeps every probability positive and each distribution summing to one
        if not (np.all(d > 0) and np.all(d <= np.array([1.0, 2.0, 3.0]))):
            raise ValueError(
                f"discounts must satisfy 0 < D1 <= 1, 0 < D2 <= 2, 0 < D3+ <= 3; got {d.tolist()}"
            )
        self.discounts = d

    def _check_fitted(self) -> None:
        if not self.tables:
            raise RuntimeError("the n-gram model is not fitted yet: call .fit(ids) first")

    def num_counts(self) -> int:
        """Number of stored m-gram counts over all orders (the model's "size")."""
        self._check_fitted()
        return int(sum(len(t.gram_codes) for t in self.tables))

    # ------------------------------------------------------------------ probabilities
    def _probs(self, hist: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """``p(targets | hist)``: ``hist (B, order-1)`` ids left-padded with -1,
        ``targets (B, J)``."""
        n, K = self.order, self.vocab_size
        B = hist.shape[0]
        ctx = np.zeros(B, dtype=np.int64)  # code of the context of the current order
        active = np.ones(B, dtype=bool)
        if self.smoothing == "add-k":
            # only the longest available context counts: walk up while the context exists
            p = np.full(targets.shape, 1.0 / K)
            for m in range(1, n + 1):
                if m > 1:
                    tok = hist[:, n - m]
                    active = active & (tok >= 0)
                    ctx = ctx + np.where(tok >= 0, tok, 0) * K ** (m - 2)
                t = self.tables[m - 1]
                rows = np.nonzero(active)[0]
                if len(rows) == 0:
                    break
                i, f = _lookup(t.ctx_codes, ctx[rows])
                total = np.where(f, t.ctx_total[i], 0.0)
                gi, gf = _lookup(t.gram_codes, ctx[rows, None] * K + targets[rows])
                c = np.where(gf, t.gram_counts[gi], 0.0)
                p[rows] = (c + self.k) / (total[:, None] + self.k * K)
            return p
        p = np.full(targets.shape, 1.0 / K)  # order 0: uniform over the vocabulary
        for m in range(1, n + 1):
            if m > 1:
                tok = hist[:, n - m]
                active = active & (tok >= 0)
                ctx = ctx + np.where(tok >= 0, tok, 0) * K ** (m - 2)
            rows = np.nonzero(active)[0]
            if len(rows) == 0:
                break
            t, d = self.tables[m - 1], self.discounts[m - 1]
            i, f = _lookup(t.ctx_codes, ctx[rows])
            total = np.where(f, t.ctx_total[i], 0.0)
            freed = np.where(f, t.ctx_nk[i] @ d, 0.0)  # D1 N1(h.) + D2 N2(h.) + D3 N3+(h.)
            gi, gf = _lookup(t.gram_codes, ctx[rows, None] * K + targets[rows])
            c = np.where(gf, t.gram_counts[gi], 0.0)
            disc = np.where(c >= 3, d[2], np.where(c >= 2, d[1], d[0]))
            seen = total > 0  # an unseen context passes the lower order through unchanged
            safe = np.where(seen, total, 1.0)[:, None]
            mixed = np.maximum(c - disc, 0.0) / safe + (freed[:, None] / safe) * p[rows]
            p[rows] = np.where(seen[:, None], mixed, p[rows])
        return p

    def _history(self, context: np.ndarray) -> np.ndarray:
        """The last ``order-1`` columns of ``context (B, C)``, left-padded with -1."""
        w = self.order - 1
        B, C = context.shape
        hist = np.full((B, w), -1, dtype=np.int64)
        if w and C:
            take = min(w, C)
            hist[:, w - take :] = context[:, C - take :]
        return hist

    def _out(self, logp: np.ndarray) -> torch.Tensor:
        """float64 NumPy log-probabilities as a tensor in the model's dtype, on its device."""
        return torch.from_numpy(logp).to(self._anchor.device, self._anchor.dtype)

    def next_log_probs(self, context: torch.Tensor) -> torch.Tensor:
        """``context (B, C)`` ids -> ``(B, K)`` log-probabilities of the next id.

        Uses the last ``order-1`` ids of each row; ``C`` may be shorter (even 0). A 1-D context
        gives a ``(K,)`` result.
        """
        self._check_fitted()
        if not isinstance(context, torch.Tensor) or context.dim() not in (1, 2):
            raise ValueError("context must be a (B, C) tensor of ids")
        squeeze = context.dim() == 1
        ctx = _ids(context.unsqueeze(0) if squeeze else context, self.vocab_size, "context")
        hist = self._history(ctx)
        targets = np.broadcast_to(np.arange(self.vocab_size), (len(hist), self.vocab_size))
        out = self._out(np.log(self._probs(hist, targets)))
        return out[0] if squeeze else out

    def _windows(self, x: np.ndarray, before: np.ndarray) -> np.ndarray:
        """The ``order-1`` ids before each position of ``x (B, T)``: ``(B, T, order-1)``.

        ``before (B, C)`` holds the ids that precede ``x`` (C may be 0); -1 pads the rest.
        """
        B, T = x.shape
        w = self.order - 1
        padded = np.concatenate([np.full((B, w), -1, dtype=np.int64), before, x], axis=1)
        padded = padded[:, padded.shape[1] - T - w :]
        return np.lib.stride_tricks.sliding_window_view(padded, w + 1, axis=1)[:, :T, :w]

    def token_log_probs(self, x: torch.Tensor, state: torch.Tensor | None = None):
        """``x (B, T) -> (log p(x_t | up to order-1 previous ids) (B, T), state)``.

        ``state (B, C)``: the ids before ``x`` in the same text (None: ``x`` starts a text);
        the returned state holds the last ``order-1`` ids read.
        """
        self._check_fitted()
        x = _ids(x, self.vocab_size, "x", shape=(None,))
        B, T = x.shape
        before = np.zeros((B, 0), dtype=np.int64) if state is None else state.cpu().numpy()
        w = self.order - 1
        p = self._probs(self._windows(x, before).reshape(B * T, w), x.reshape(B * T, 1))
        history = np.concatenate([before, x], axis=1)[:, max(0, before.shape[1] + T - w) :]
        return self._out(np.log(p).reshape(B, T)), torch.from_numpy(history)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, T) -> (B, T, K)`` log-probabilities of every conditional ``p(x_t | x_<t)``."""
        self._check_fitted()
        ids = _ids(x, self.vocab_size, "x", shape=(None,))
        B, T, K, w = *ids.shape, self.vocab_size, self.order - 1
        hist = self._windows(ids, np.zeros((B, 0), dtype=np.int64)).reshape(B * T, w)
        targets = np.broadcast_to(np.arange(K), (B * T, K))
        return self._out(np.log(self._probs(hist, targets)).reshape(B, T, K))

    def next_logits(self, use_cache: bool = True):
        """Logits of ``p(x_i | x_<i)`` from the last ``order-1`` symbols of the buffer (an n-gram
        has no state to carry: ``use_cache`` changes nothing)."""
        self._check_fitted()
        w = self.order - 1
        return lambda x, i: self.next_log_probs(x[:, max(0, i - w) : i])

    def extra_repr(self) -> str:
        fitted = f", {self.num_counts()} counts" if self.tables else ""
        return (
            f"order={self.order}, vocab_size={self.vocab_size}, "
            f"smoothing={self.smoothing!r}{fitted}"
        )


def tune_kneser_ney(
    train_ids: torch.Tensor,
    vocab_size: int,
    orders=(4, 5, 6, 7, 8),
    holdout_fraction: float = 0.1,
    scales=(0.8, 0.9, 1.0, 1.1, 1.25),
    progress: bool = False,
) -> dict:
    """Choose the order and discounts of Kneser-Ney on held-out *training* text.

    Fits on the first ``1 - holdout_fraction`` of ``train_ids`` and scores the rest (the
    validation split is never touched). For each order, the estimated discounts of each level
    are scaled by the best factor in ``scales``, one level at a time from the top order down.
    Returns ``{"order", "discount" (order, 3) list, "holdout_nll", "table": [(order, nll), ...]}``;
    refit with ``NGramLM(best["order"], K, discount=best["discount"]).fit(train_ids)``.
    """
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    cut = int(len(train_ids) * (1 - holdout_fraction))
    fit_ids, held = train_ids[:cut], train_ids[cut:]
    if len(held) == 0 or cut == 0:
        raise ValueError("training text too short to hold out a part of it")
    best, table = None, []
    it = orders
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(orders, desc="tuning Kneser-Ney", leave=False)
    for order in it:
        lm = NGramLM(order, vocab_size).fit(fit_ids)
        base = lm.estimated_discounts()
        d = base.copy()
        score = lm.sequence_nll(held)
        for m in range(order - 1, -1, -1):
            for s in scales:
                trial = d.copy()
                trial[m] = np.clip(base[m] * s, 0.01, [1.0, 2.0, 3.0])
                lm.set_discounts(trial)
                nll = lm.sequence_nll(held)
                if nll < score - 1e-6:
                    score, d = nll, trial
        table.append((order, score))
        if best is None or score < best["holdout_nll"]:
            best = {"order": order, "discount": d.tolist(), "holdout_nll": score}
    best["table"] = table
    return best
