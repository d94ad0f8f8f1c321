"""What chapter 2's sequence models share: reading a text left to right with a carried state.

An n-gram, an HMM and an RNN all score a text one symbol at a time from a summary of what came
before: the last ``n - 1`` symbols, the filtering distribution over hidden states, a hidden
vector. :meth:`SequenceLM.token_log_probs` exposes that summary as ``state``, so a text of any
length can be read in chunks (truncated BPTT in training, :meth:`SequenceLM.sequence_nll` in
evaluation) with exactly the result of reading it in one piece. ``state=None`` means "the text
starts here": the model's begin-of-sequence state (a padded context, the initial distribution,
the ``BOS`` input id), so the first symbol is scored too.
"""

from __future__ import annotations

import torch

from ..protocol import ARModule
from ..train import evaluating
from ..validation import as_indices, check_int


class SequenceLM(ARModule):
    """Base of the models of one long text: ``log_prob`` and ``sequence_nll`` from one method."""

    vocab_size: int
    sequence_chunk = 1024  # symbols per chunk in sequence_nll (memory, not the result)

    def token_log_probs(self, x: torch.Tensor, state=None) -> tuple[torch.Tensor, object]:
        """``x (B, T) -> (log p(x_t | x_<t) (B, T), state after x)``; subclasses implement it.

        ``state`` is what the previous call returned for the text before ``x`` (None: ``x``
        starts a text).
        """
        raise NotImplementedError

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, T) -> (B,)`` log-probability of each sequence in nats, every symbol scored."""
        return self.token_log_probs(x)[0].sum(-1)

    def sequence_nll(self, ids: torch.Tensor, chunk: int | None = None) -> float:
        """Mean nats per symbol of one long 1-D text, its state carried through all of it.

        Read in chunks of ``chunk`` symbols (default ``sequence_chunk``), with the same result
        as one pass (exact).
        """
        chunk = check_int(chunk or self.sequence_chunk, "chunk", low=1)
        if not isinstance(ids, torch.Tensor) or ids.dim() != 1 or ids.numel() == 0:
            raise ValueError("sequence_nll expects a non-empty 1-D tensor of ids")
        ids = as_indices(ids, self.vocab_size, name="ids").to(self.device)
        state, total = None, 0.0
        with evaluating(self):
            for i in range(0, len(ids), chunk):
                lp, state = self.token_log_probs(ids[i : i + chunk].unsqueeze(0), state)
                total -= float(lp.double().sum())
        return total / len(ids)
