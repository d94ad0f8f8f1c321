"""The one protocol every autoregressive model in the book follows.

Like ``torch.distributions``, a model's public face is three methods, with the same signature
for a FVSBN, an n-gram, a PixelCNN, a GPT and an RNN-MDN:

=====================================================  ==========================================
``forward(x, **conditioning)``                         the parameters of every conditional
                                                       ``p(x_i | x_<i)`` at once (teacher forcing)
``log_prob(x, **conditioning) -> (B,)``                ``log p(x) = sum_i log p(x_i | x_<i)`` in
                                                       nats, over *every* dimension of ``x``
``nll(x, **conditioning) -> ()``                       the training loss: mean nats per scored
                                                       dimension over the batch
``sample(n, *, prompt=None, generator=None,            ``n`` ancestral samples, one dimension at a
length=None, **conditioning)``                         time, the prompt kept unchanged
=====================================================  ==========================================

Conventions, decided once:

- **The first symbol is scored too.** A sequence model reads a begin-of-sequence state before
  ``x_0``: the RNNs and GPT an extra input id ``BOS = vocab_size`` (input only, never
  generated), the HMM and Markov chain their initial distribution, the n-gram a padded context.
  So ``log_prob`` of every sequence model sums over all ``T`` symbols, and enumerating all
  ``K**T`` sequences gives total probability 1.
- **Conditioning is by keyword**: ``label=`` (class-conditional PixelCNN), ``mask=`` (padding of
  variable-length strokes, ignored wherever it is 0), ``text=`` (handwriting synthesis).
- **``nll`` is per dimension** (per pixel, character or pen point; padding excluded), the unit in
  which the book reports results (nats/char, bits/dim after dividing by ln 2), so one learning
  rate fits data of any size. :meth:`ARModule.scored_dims` says what a dimension is.
- **``length``** is the length of the returned sequences, prompt included; models of a fixed size
  (images) take ``length=None`` only.
- **Prompts** have the shape of the first ``C`` steps of one sample (or of ``n`` samples);
  :meth:`ARModule.start_buffer` turns one into the buffer that sampling fills in.
- **Inputs** are checked by :mod:`arnb.validation`, which one switch turns off in hot loops.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn

from .validation import as_indices, check_int


@runtime_checkable
class ARModel(Protocol):
    """Structural type of an autoregressive model (checked with ``isinstance``)."""

    def log_prob(self, x: torch.Tensor, **conditioning) -> torch.Tensor: ...

    def nll(self, x: torch.Tensor, **conditioning) -> torch.Tensor: ...

    def sample(
        self,
        n: int,
        *,
        prompt: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        length: int | None = None,
        **conditioning,
    ) -> torch.Tensor: ...


class ARModule(nn.Module):
    """Base class for the book's AR models: the NLL, the prompt buffer and small helpers.

    Subclasses implement ``forward``, ``log_prob`` and ``sample``, and override
    :meth:`scored_dims` when a dimension is not one entry of ``x``.
    """

    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the model's parameters (float32, or float64 after ``.double()``)."""
        for t in list(self.parameters()) + list(self.buffers()):
            if t.is_floating_point():
                return t.dtype
        return torch.get_default_dtype()

    def scored_dims(self, x: torch.Tensor, **conditioning) -> torch.Tensor | int:
        """How many dimensions ``log_prob(x)`` scores over the whole batch: ``x.numel()``."""
        return x.numel()

    def nll(self, x: torch.Tensor, **conditioning) -> torch.Tensor:
        """The training loss: mean negative log-likelihood in nats per scored dimension."""
        total = -self.log_prob(x, **conditioning).sum()
        return total / self.scored_dims(x, **conditioning)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def start_buffer(
        self,
        n: int,
        prompt: torch.Tensor | None,
        shape: tuple[int, ...],
        *,
        axis: int = 0,
        num_classes: int | None = None,
        dtype: torch.dtype = torch.long,
    ) -> tuple[torch.Tensor, int]:
        """A zero buffer ``(n, *shape)`` on the model's device with ``prompt`` written in front.

        ``shape`` is one sample's shape and ``axis`` the one along which the model generates
        (time; the rows of an image). ``prompt`` holds the first ``C`` steps of one sample (the
        shape ``shape`` with ``C`` along ``axis``) or of each of the ``n`` samples (with a
        leading ``n``). Discrete models pass ``num_classes`` so the prompt's values are checked.
        Returns the buffer and ``C``, the first step left to sample.
        """
        n = check_int(n, "n", low=1)
        buf = torch.zeros((n, *shape), dtype=dtype, device=self.device)
        if prompt is None:
            return buf, 0
        if not isinstance(prompt, torch.Tensor):
            prompt = torch.as_tensor(prompt)
        if prompt.dim() == len(shape):
            prompt = prompt.unsqueeze(0).expand(n, *prompt.shape)
        want = list(shape)
        want[axis] = f"C<={shape[axis]}"
        ok = prompt.dim() == len(shape) + 1 and prompt.shape[0] == n
        ok = ok and all(
            (prompt.shape[1 + a] <= s) if a == axis else (prompt.shape[1 + a] == s)
            for a, s in enumerate(shape)
        )
        if not ok:
            raise ValueError(
                f"prompt must have shape ({', '.join(map(str, want))}) or (n={n}, "
                f"{', '.join(map(str, want))}), got {tuple(prompt.shape)}"
            )
        if num_classes is not None:
            prompt = as_indices(prompt, num_classes, name="prompt")
        c = prompt.shape[1 + axis]
        index = (slice(None),) * (1 + axis) + (slice(0, c),)
        buf[index] = prompt.to(buf.device, dtype)
        return buf, c

    def log_prob(self, x: torch.Tensor, **conditioning) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def sample(
        self, n, *, prompt=None, generator=None, length=None, **conditioning
    ):  # pragma: no cover - abstract
        raise NotImplementedError


def fixed_length(length: int | None, size: int, what: str = "sample") -> int:
    """For models of one size: ``length`` must be None or ``size``; returns ``size``."""
    if length is not None and length != size:
        raise ValueError(f"this model draws {what}s of length {size} only, got length={length}")
    return size
