"""The smallest autoregressive model: a first-order Markov chain over K symbols.

``p(x) = p(x_0) * prod_{i>0} p(x_i | x_{i-1})`` with learnable logits. It exists to prove the
shared machinery (protocol, sampler, test probes, training loop, the ``markov-chain`` recipe) on
a model whose every probability can be written down; chapter 2 grows it into n-grams, HMMs and
RNNs. The first symbol is scored by the initial distribution, so ``log_prob`` covers all of x.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..protocol import ARModule, fixed_length
from ..sampling import ancestral_sample
from ..validation import as_indices, check_int


class MarkovChain(ARModule):
    """First-order Markov chain on sequences of fixed length over ``num_classes`` symbols."""

    def __init__(self, num_classes: int, length: int):
        super().__init__()
        check_int(num_classes, "num_classes", low=2)
        check_int(length, "length", low=1)
        self.num_classes, self.length = num_classes, length
        self.initial = nn.Parameter(torch.randn(num_classes) * 0.5)
        self.transition = nn.Parameter(torch.randn(num_classes, num_classes) * 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of every conditional: ``x (B, T) integer -> (B, T, K)``.

        Also accepts ``x (B, T, K)`` float (one-hot or relaxed), so gradients can probe causality.
        """
        if x.dtype.is_floating_point:
            onehot = x.to(self.transition.dtype)
        else:
            onehot = F.one_hot(x.long(), self.num_classes).to(self.transition.dtype)
        prev = onehot[:, :-1] @ self.transition  # row of the transition matrix of x_{i-1}
        first = self.initial.expand(onehot.shape[0], 1, -1)
        return torch.cat([first, prev], dim=1)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, T) integer -> (B,)`` log-probability in nats."""
        x = as_indices(x, self.num_classes, (self.length,))
        logp = F.log_softmax(self(x), dim=-1)
        return logp.gather(-1, x.unsqueeze(-1)).squeeze(-1).sum(-1)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        prompt: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        length: int | None = None,
    ) -> torch.Tensor:
        """``(n, T)`` long samples; ``prompt (C,)`` or ``(n, C)`` fixes the first C symbols."""
        T = fixed_length(length, self.length)
        x, start = self.start_buffer(n, prompt, (T,), num_classes=self.num_classes)

        def next_logits(x: torch.Tensor, i: int) -> torch.Tensor:
            return self.initial.expand(n, -1) if i == 0 else self.transition[x[:, i - 1]]

        return ancestral_sample(next_logits, x, start, generator=generator)
