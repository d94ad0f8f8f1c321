"""Handwriting synthesis: an RNN-MDN that writes a given text through a soft attention window
over its characters (Graves 2013, section 5).

The model is ``p(x_1..x_T | c) = prod_t p(x_t | x_<t, c)`` for a text ``c = c_1..c_U``. At step t a
first LSTM reads the last point and the last window vector, and emits the parameters of K Gaussian
bumps over the character positions u:

    phi(t, u) = sum_k alpha_k exp(-beta_k (kappa_k - u)^2),
    kappa_t = kappa_{t-1} + exp(kappa_hat),

so the bumps can only move forward along the text (kappa increases), at a speed the network picks.
The window ``w_t = sum_u phi(t, u) onehot(c_u)`` is a soft choice of "the letter being written
now". A second LSTM reads the point, the first LSTM's output and the window, and the
mixture-plus-pen head of :class:`~arnb.models.rnn_mdn.StrokeModel` (the RNN-MDN's, with its
``log_prob``, padding mask and NLL per point) turns it into ``p(x_t | x_<t, c)``.

The first layer and the window form a recurrence (the window feeds back into the first LSTM), so
they run as a Python loop over time; the second layer does not feed back and runs as one fused
``nn.LSTM`` call over the whole sequence. Sampling stops a drawing when the window has moved past
the last character (``phi`` is largest one position beyond the text), as Graves does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..data.handwriting import ALPHABET
from ..distributions import StrokeMixture
from .rnn_mdn import StrokeModel

Text = str | Sequence[str] | tuple[torch.Tensor, torch.Tensor]
"""A text per drawing: one string for all, a list of B strings, or encoded ``(ids, mask)``."""


def encode_texts(texts: str | Sequence[str], alphabet: str) -> tuple[torch.Tensor, torch.Tensor]:
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


@dataclass
class SynthesisConfig:
    """Sizes of a :class:`HandwritingSynthesis` model.

    ``points_per_char`` only initialises the window's speed (about one character every that many
    points), which saves the first minutes of training from searching for it; it also sets the
    default sample length, 3 points_per_char per character.
    """

    alphabet: str = ALPHABET
    hidden: int = 256
    window_components: int = 10
    components: int = 20
    sigma_floor: float = 1e-3
    rho_max: float = 1 - 1e-4
    points_per_char: float = 11.5


class Writing(NamedTuple):
    """What :meth:`HandwritingSynthesis.sample_with_attention` returns.

    ``strokes (n, length, 3)``; ``lengths (n,)`` the points drawn before the window passed the
    text's end (the rows after are ``(0, 0, 1)``); ``phi (n, length, U+1)`` the window weights.
    """

    strokes: torch.Tensor
    lengths: torch.Tensor
    phi: torch.Tensor


class HandwritingSynthesis(StrokeModel):
    """LSTM -> attention window over the text -> LSTM -> mixture-plus-pen head."""

    def __init__(self, config: SynthesisConfig | None = None, **kwargs):
        super().__init__()
        self.config = c = config or SynthesisConfig(**kwargs)
        if len(set(c.alphabet)) != len(c.alphabet) or not c.alphabet:
            raise ValueError(
                f"alphabet must be a non-empty string of distinct characters, got {c.alphabet!r}"
            )
        v, h, k = len(c.alphabet), c.hidden, c.window_components
        self.register_buffer("start", torch.tensor([0.0, 0.0, 1.0]))
        self.cell1 = nn.LSTMCell(3 + v, h)
        self.window = nn.Linear(h, 3 * k)
        self.rnn2 = nn.LSTM(3 + v + h, h, batch_first=True)
        self.head = nn.Linear(2 * h, StrokeMixture.num_raw(c.components))
        with torch.no_grad():  # the window starts moving one character per points_per_char steps
            self.window.bias[2 * k :].fill_(math.log(1.0 / c.points_per_char))

    def encode(self, text: Text, batch: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``text`` -> ``(ids (B, U) long, mask (B, U) bool)`` on the model's device.

        One string is repeated ``batch`` times; unknown characters raise ``ValueError``.
        """
        if text is None:
            raise ValueError("handwriting synthesis is conditional: pass text= (what is written)")
        if isinstance(text, tuple) and len(text) == 2 and isinstance(text[0], torch.Tensor):
            ids, mask = text
        else:
            if isinstance(text, str) and batch is not None:
                text = [text] * batch
            ids, mask = encode_texts(text, self.config.alphabet)
        if batch is not None and ids.shape[0] != batch:
            raise ValueError(f"need one text per drawing: {ids.shape[0]} texts for {batch}")
        return ids.to(self.device), mask.to(self.device)

    def _window(
        self, h1: torch.Tensor, kappa: torch.Tensor, onehot: torch.Tensor, text_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step of the window: ``h1 (B, H)`` -> ``(w (B, V), kappa (B, K), phi (B, U+1))``.

        ``phi`` has one extra position past the end of each text (used to decide when to stop);
        the window ``w`` only mixes real characters.
        """
        dtype = kappa.dtype
        a_hat, b_hat, k_hat = self.window(h1).to(dtype).clamp(-10.0, 10.0).chunk(3, dim=-1)
        kappa = kappa + torch.exp(k_hat)
        u = torch.arange(onehot.shape[1] + 1, device=h1.device, dtype=dtype)
        phi = (
            torch.exp(a_hat).unsqueeze(-1)
            * torch.exp(-torch.exp(b_hat).unsqueeze(-1) * (kappa.unsqueeze(-1) - u) ** 2)
        ).sum(1)
        w = torch.bmm((phi[:, :-1] * text_mask).unsqueeze(1), onehot).squeeze(1)
        return w, kappa, phi

    def _initial(self, b: int, ids: torch.Tensor, text_mask: torch.Tensor):
        """One-hot text, its mask, and the zero window and window position, in the model dtype."""
        c, dtype = self.config, self.dtype
        onehot = F.one_hot(ids, len(c.alphabet)).to(dtype)
        w = torch.zeros(b, len(c.alphabet), device=self.device, dtype=dtype)
        kappa = torch.zeros(b, c.window_components, device=self.device, dtype=dtype)
        return onehot, text_mask.to(dtype), w, kappa

    def _run(self, x: torch.Tensor, text: Text) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing: raw head outputs ``(B, T, 6M+1)`` and window weights ``(B, T, U+1)``."""
        b, t = x.shape[:2]
        onehot, text_mask, w, kappa = self._initial(b, *self.encode(text, b))
        inputs = torch.cat([self.start.expand(b, 1, 3).to(x.dtype), x[:, :-1]], dim=1)
        state1 = None
        hs, ws, phis = [], [], []
        for i in range(t):
            state1 = self.cell1(torch.cat([inputs[:, i], w.to(inputs.dtype)], -1), state1)
            w, kappa, phi = self._window(state1[0], kappa, onehot, text_mask)
            hs.append(state1[0])
            ws.append(w)
            phis.append(phi)
        h1, w = torch.stack(hs, 1), torch.stack(ws, 1)
        h2, _ = self.rnn2(torch.cat([inputs, h1, w.to(h1.dtype)], -1))
        return self._head(torch.cat([h1, h2], -1)), torch.stack(phis, 1)

    def forward(self, x: torch.Tensor, *, text: Text = None) -> torch.Tensor:
        """Raw parameters of every ``p(x_t | x_<t, c)``: ``x (B, T, 3)`` -> ``(B, T, 6M+1)``."""
        return self._run(x, text)[0]

    def log_prob(
        self, x: torch.Tensor, *, mask: torch.Tensor | None = None, text: Text = None
    ) -> torch.Tensor:
        """``log p(x | text)`` per drawing in nats: ``x (B, T, 3)`` -> ``(B,)``."""
        if text is None:
            raise ValueError(
                "handwriting synthesis is conditional: pass text=, the texts the drawings show"
            )
        return super().log_prob(x, mask=mask, text=text)

    def attention(self, x: torch.Tensor, *, text: Text) -> torch.Tensor:
        """The window weights ``phi (B, T, U+1)`` while reading ``x`` (teacher forcing)."""
        return self._run(self._clean(x, None), text)[1]

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        prompt: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        length: int | None = None,
        text: str | Sequence[str] | None = None,
        bias: float = 0.0,
        temperature: float = 1.0,
    ) -> torch.Tensor:
        """Write ``text`` ``n`` times (or one text each from a list of n): ``(n, length, 3)``.

        See :meth:`sample_with_attention`, which also returns where each drawing ended and the
        window weights.
        """
        return self.sample_with_attention(
            n,
            prompt=prompt,
            generator=generator,
            length=length,
            text=text,
            bias=bias,
            temperature=temperature,
        ).strokes

    @torch.no_grad()
    def sample_with_attention(
        self,
        n: int,
        *,
        text: str | Sequence[str] | None = None,
        prompt: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        length: int | None = None,
        bias: float = 0.0,
        temperature: float = 1.0,
    ) -> Writing:
        """Write ``text``: the drawings, their lengths and the window weights (:class:`Writing`).

        A drawing ends when the window has passed its last character; its remaining rows are
        ``(0, 0, 1)`` (no move, pen up). ``length`` (prompt included) defaults to
        ``3 * points_per_char`` per character. A ``prompt (C, 3)`` or ``(n, C, 3)`` forces the
        first C points (returned unchanged). ``bias``/``temperature``: see
        :meth:`~arnb.distributions.StrokeMixture.adjust`.
        """
        c = self.config
        ids, tmask = self.encode(text, n)
        if length is None:
            length = max(1, int(3 * c.points_per_char * ids.shape[1]))
        out, start, length = self._start(n, prompt, length)
        onehot, text_mask, w, kappa = self._initial(n, ids, tmask)
        u_len = tmask.sum(1).view(-1, 1)
        pen_up = self.start.to(out.dtype)
        prev = pen_up.expand(n, 3)
        state1 = state2 = None
        done = torch.zeros(n, dtype=torch.bool, device=self.device)
        lengths = torch.full((n,), length, dtype=torch.long, device=self.device)
        phis = []
        for t in range(length):
            state1 = self.cell1(torch.cat([prev, w], -1), state1)
            w, kappa, phi = self._window(state1[0], kappa, onehot, text_mask)
            h2, state2 = self.rnn2(torch.cat([prev, state1[0], w], -1).unsqueeze(1), state2)
            phis.append(phi)
            if t < start:
                prev = out[:, t]
                continue
            params = self.mixture(self._head(torch.cat([state1[0], h2[:, 0]], -1)))
            point = params.adjust(bias, temperature).sample(generator)
            # finished: the window's peak lies past the text's last character
            newly = ~done & (phi.gather(1, u_len).squeeze(1) > (phi[:, :-1] * text_mask).amax(1))
            lengths = torch.where(newly, t, lengths)
            done = done | newly
            out[:, t] = prev = torch.where(done.unsqueeze(1), pen_up, point)
            # asking whether all are done makes the CPU wait for the GPU: do it now and then
            if t % 8 == 7 and bool(done.all()):
                out[:, t + 1 :] = pen_up
                phis += [torch.zeros_like(phi)] * (length - t - 1)
                break
        return Writing(out, lengths.cpu(), torch.stack(phis, 1).cpu())
