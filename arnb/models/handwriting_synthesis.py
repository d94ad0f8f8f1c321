"""Handwriting synthesis: an RNN-MDN that writes a given text through a soft attention window
over its characters (Graves 2013, section 5).

The model is ``p(x_1..x_T | c) = prod_t p(x_t | x_<t, c)`` for a text ``c = c_1..c_U``. At step t a
first LSTM reads the last point and the last window vector, and emits the parameters of K Gaussian
bumps over the character positions u:

    phi(t, u) = sum_k alpha_k exp(-beta_k (kappa_k - u)^2),   kappa_t = kappa_{t-1} + exp(kappa_hat),

so the bumps can only move forward along the text (kappa increases), at a speed the network picks.
The window ``w_t = sum_u phi(t, u) onehot(c_u)`` is a soft choice of "the letter being written
now". A second LSTM reads the point, the first LSTM's output and the window, and the mixture-plus-
pen head of :mod:`arnb.models.rnn_mdn` turns it into ``p(x_t | x_<t, c)``.

The first layer and the window form a recurrence (the window feeds back into the first LSTM), so
they run as a Python loop over time; the second layer does not feed back and runs as one fused
``nn.LSTM`` call over the whole sequence. Sampling stops a drawing when the window has moved past
the last character (``phi`` is largest one position beyond the text), as Graves does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.handwriting import ALPHABET
from ..data.stroke_batches import check_strokes, encode_texts
from ..protocol import ARModule
from .rnn_mdn import (
    MixtureParams,
    adjust_for_sampling,
    mixture_params,
    num_raw_params,
    point_log_prob,
    sample_points,
    start_strokes,
)


@dataclass
class SynthesisConfig:
    """Sizes of a :class:`HandwritingSynthesis` model.

    ``points_per_char`` only initialises the window's speed (about one character every that many
    points), which saves the first minutes of training from searching for it.
    """

    alphabet: str = ALPHABET
    hidden: int = 256
    window_components: int = 10
    components: int = 20
    sigma_floor: float = 1e-3
    rho_max: float = 1 - 1e-4
    points_per_char: float = 11.5


class HandwritingSynthesis(ARModule):
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
        self.head = nn.Linear(2 * h, num_raw_params(c.components))
        with (
            torch.no_grad()
        ):  # start the window moving about one character per points_per_char steps
            self.window.bias[2 * k :].fill_(math.log(1.0 / c.points_per_char))

    def encode(self, texts) -> tuple[torch.Tensor, torch.Tensor]:
        """Texts -> ``(ids (B, U) long, mask (B, U) bool)``; unknown characters raise ``ValueError``."""
        return encode_texts(texts, self.config.alphabet)

    def _window(
        self, h1: torch.Tensor, kappa: torch.Tensor, onehot: torch.Tensor, text_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step of the window: ``h1 (B, H)`` -> ``(w (B, V), kappa (B, K), phi (B, U+1))``.

        ``phi`` has one extra position past the end of each text (used to decide when to stop);
        the window ``w`` only mixes real characters.
        """
        a_hat, b_hat, k_hat = self.window(h1).float().clamp(-10.0, 10.0).chunk(3, dim=-1)
        kappa = kappa + torch.exp(k_hat)
        u = torch.arange(onehot.shape[1] + 1, device=h1.device, dtype=torch.float32)
        phi = (
            torch.exp(a_hat).unsqueeze(-1)
            * torch.exp(-torch.exp(b_hat).unsqueeze(-1) * (kappa.unsqueeze(-1) - u) ** 2)
        ).sum(1)
        w = torch.bmm((phi[:, :-1] * text_mask).unsqueeze(1), onehot).squeeze(1)
        return w, kappa, phi

    def _run(self, x: torch.Tensor, ids: torch.Tensor, text_mask: torch.Tensor):
        """Teacher forcing: raw head outputs ``(B, T, 6M+1)`` and the window weights ``phi (B, T, U+1)``."""
        b, t = x.shape[:2]
        c = self.config
        onehot = F.one_hot(ids, len(c.alphabet)).float()
        text_mask = text_mask.float()
        inputs = torch.cat([self.start.expand(b, 1, 3).to(x.dtype), x[:, :-1]], dim=1)
        state1 = None
        w = torch.zeros(b, len(c.alphabet), device=x.device)
        kappa = torch.zeros(b, c.window_components, device=x.device)
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

    def _head(self, h: torch.Tensor) -> torch.Tensor:
        with torch.autocast(h.device.type, enabled=False):  # float32 head, as in RNNMDN
            return self.head(h.float())

    def forward(self, x: torch.Tensor, ids: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """Raw parameters of every ``p(x_t | x_<t, c)``: ``x (B, T, 3)``, text ids/mask ``(B, U)`` -> ``(B, T, 6M+1)``."""
        return self._run(x, ids, text_mask)[0]

    def _params(self, raw: torch.Tensor) -> MixtureParams:
        c = self.config
        return mixture_params(raw, c.components, c.sigma_floor, c.rho_max)

    def _check(self, x, mask, texts):
        check_strokes(x, mask, name="x")
        if torch.as_tensor(x).dim() != 3:
            raise ValueError(
                f"x must be a batch (B, T, 3), got shape {tuple(torch.as_tensor(x).shape)}"
            )
        ids, tmask = self.encode(texts) if not isinstance(texts, tuple) else texts
        if ids.shape[0] != x.shape[0]:
            raise ValueError(
                f"need one text per drawing: {ids.shape[0]} texts for {x.shape[0]} drawings"
            )
        return x.to(self.device, torch.float32), ids.to(self.device), tmask.to(self.device)

    def point_log_prob(
        self, x: torch.Tensor, texts, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``log p(x_t | x_<t, c)`` in nats, ``(B, T)``; ``texts`` is a list of B strings or ``(ids, text_mask)``."""
        x, ids, tmask = self._check(x, mask, texts)
        lp = point_log_prob(self._params(self(x, ids, tmask)), x)
        return lp if mask is None else lp * mask.to(lp.device)

    def log_prob(
        self, x: torch.Tensor, texts=None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``log p(x | c)`` per drawing in nats: ``(B,)``."""
        if texts is None:
            raise ValueError(
                "handwriting synthesis is conditional: pass the texts the drawings show"
            )
        return self.point_log_prob(x, texts, mask).sum(-1)

    def nll_per_point(
        self, x: torch.Tensor, texts, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mean NLL per real point in nats (the training loss)."""
        lp = self.point_log_prob(x, texts, mask)
        return -lp.sum() / (lp.numel() if mask is None else mask.sum())

    def attention(self, x: torch.Tensor, texts) -> torch.Tensor:
        """The window weights ``phi (B, T, U+1)`` while reading ``x`` (teacher forcing)."""
        x, ids, tmask = self._check(x, None, texts)
        return self._run(x, ids, tmask)[1]

    @torch.no_grad()
    def sample(
        self,
        n: int = 1,
        prompt: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        *,
        text: str | list[str] = "hello",
        max_length: int | None = None,
        bias: float = 0.0,
        temperature: float = 1.0,
        return_attention: bool = False,
    ):
        """Write ``text`` ``n`` times (or one text each from a list of n): ``(n, max_length, 3)``.

        A drawing ends when the window has passed its last character; its remaining rows are
        ``(0, 0, 1)`` (no move, pen up). ``max_length`` defaults to ``3 * points_per_char`` per
        character. With ``return_attention``, also ``(lengths (n,), phi (n, max_length, U+1))``.
        A ``prompt (C, 3)`` or ``(n, C, 3)`` forces the first C points (returned unchanged).
        """
        c = self.config
        texts = [text] * n if isinstance(text, str) else list(text)
        if len(texts) != n:
            raise ValueError(f"need one text or n={n} texts, got {len(texts)}")
        ids, tmask = self.encode(texts)
        ids, tmask = ids.to(self.device), tmask.to(self.device)
        onehot = F.one_hot(ids, len(c.alphabet)).float()
        u_len = tmask.sum(1)
        length = max_length or int(3 * c.points_per_char * ids.shape[1])
        out, start = start_strokes(prompt, n, length, self.device)
        prev = self.start.expand(n, 3)
        w = torch.zeros(n, len(c.alphabet), device=self.device)
        kappa = torch.zeros(n, c.window_components, device=self.device)
        state1 = state2 = None
        done = torch.zeros(n, dtype=torch.bool, device=self.device)
        lengths = torch.full((n,), length, dtype=torch.long)
        phis = torch.zeros(n, length, ids.shape[1] + 1)
        for t in range(length):
            state1 = self.cell1(torch.cat([prev, w], -1), state1)
            w, kappa, phi = self._window(state1[0], kappa, onehot, tmask.float())
            h2, state2 = self.rnn2(torch.cat([prev, state1[0], w], -1).unsqueeze(1), state2)
            phis[:, t] = phi.cpu()
            if t < start:
                point = out[:, t]
            else:
                params = self._params(self._head(torch.cat([state1[0], h2[:, 0]], -1)))
                point = sample_points(adjust_for_sampling(params, bias, temperature), generator)
                # finished: the window's peak lies past the text's last character
                past_end = phi.gather(1, u_len.view(-1, 1)).squeeze(1)
                inside = (phi[:, :-1] * tmask).amax(1)
                newly = ~done & (past_end > inside)
                lengths[newly.cpu()] = t
                done |= newly
                point = torch.where(
                    done.unsqueeze(1), torch.tensor([0.0, 0.0, 1.0], device=self.device), point
                )
                out[:, t] = point
                if done.all():
                    out[:, t + 1 :] = torch.tensor([0.0, 0.0, 1.0], device=self.device)
                    break
            prev = point
        return (out, (lengths, phis)) if return_attention else out
