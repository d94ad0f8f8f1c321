"""The one protocol every autoregressive model in the book follows.

Like ``torch.distributions``, a model's public face is

- ``forward(x)``: the parameters of every conditional ``p(x_i | x_<i)`` at once (teacher
  forcing), e.g. logits of shape ``(B, D, K)`` for a categorical model;
- ``log_prob(x) -> (B,)``: ``log p(x) = sum_i log p(x_i | x_<i)`` in **nats**;
- ``sample(n, prompt=None, generator=None, ...)``: ancestral sampling, one dimension at a
  time, keeping the given prompt (the first dimensions) unchanged.

Notebooks, tests and recipes can then treat a FVSBN, a PixelCNN, a GPT and an RNN-MDN the
same way (see :mod:`arnb.testing` for the checks every model goes through).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class ARModel(Protocol):
    """Structural type of an autoregressive model (checked with ``isinstance``)."""

    def log_prob(self, x: torch.Tensor) -> torch.Tensor: ...

    def sample(
        self, n: int, prompt: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor: ...


class ARModule(nn.Module):
    """Base class for the book's AR models: shared device helper and NLL wrappers.

    Subclasses implement ``forward``, ``log_prob`` and ``sample``.
    """

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood per example, in nats (the training loss)."""
        return -self.log_prob(x).mean()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def sample(self, n, prompt=None, generator=None):  # pragma: no cover - abstract
        raise NotImplementedError


def check_discrete(
    x: torch.Tensor, num_classes: int, shape: tuple[int, ...] | None = None, name: str = "x"
) -> None:
    """Raise a clear error unless ``x`` is an integer tensor with values in ``[0, num_classes)``.

    ``shape`` gives the expected trailing dimensions (without the batch dimension).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype.is_floating_point or x.dtype == torch.bool or x.dtype.is_complex:
        raise TypeError(
            f"{name} must hold integer category indices (torch.long), got dtype {x.dtype}; "
            "convert with x.long() if the values are already whole numbers"
        )
    if shape is not None and tuple(x.shape[1:]) != tuple(shape):
        raise ValueError(
            f"{name} must have shape (batch, {', '.join(map(str, shape))}), got {tuple(x.shape)}"
        )
    if x.numel() and (x.min() < 0 or x.max() >= num_classes):
        raise ValueError(
            f"{name} values must lie in [0, {num_classes - 1}], found range "
            f"[{int(x.min())}, {int(x.max())}]"
        )
