"""The smallest autoregressive model: a first-order Markov chain over K symbols.

``p(x) = p(x_1) * prod_{i>1} p(x_i | x_{i-1})`` with learnable logits. It exists to prove the
shared machinery (protocol, sampler, test helpers, training loop) on a model whose every
probability can be written down; chapter 2 grows it into n-grams, HMMs and RNNs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..protocol import ARModule, check_discrete
from ..sampling import ancestral_sample


class MarkovChain(ARModule):
    """First-order Markov chain on sequences of fixed length over ``num_classes`` symbols."""

    def __init__(self, num_classes: int, length: int):
        super().__init__()
        if num_classes < 2 or length < 1:
            raise ValueError(f"need num_classes >= 2 and length >= 1, got {num_classes}, {length}")
        self.num_classes, self.length = num_classes, length
        self.initial = nn.Parameter(torch.randn(num_classes) * 0.5)
        self.transition = nn.Parameter(torch.randn(num_classes, num_classes) * 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of every conditional: ``x (B, T) long -> (B, T, K)``.

        Also accepts ``x (B, T, K)`` float (one-hot or relaxed), so gradients can probe causality.
        """
        onehot = x if x.dtype.is_floating_point else F.one_hot(x, self.num_classes).float()
        prev = onehot[:, :-1] @ self.transition  # row of the transition matrix of x_{i-1}
        first = self.initial.expand(onehot.shape[0], 1, -1)
        return torch.cat([first, prev], dim=1)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, T) long -> (B,)`` log-probability in nats."""
        check_discrete(x, self.num_classes, (self.length,))
        logp = F.log_softmax(self(x), dim=-1)
        return logp.gather(-1, x.unsqueeze(-1)).squeeze(-1).sum(-1)

    @torch.no_grad()
    def sample(
        self, n: int, prompt: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``(n, T)`` long samples; ``prompt (C,)`` or ``(n, C)`` fixes the first C symbols."""

        def next_logits(x: torch.Tensor, i: int) -> torch.Tensor:
            return self.initial.expand(n, -1) if i == 0 else self.transition[x[:, i - 1]]

        return ancestral_sample(next_logits, n, self.length, prompt, generator, self.device)
