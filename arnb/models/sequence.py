"""What chapter 2's sequence models share: reading a text left to right with a carried state.

An n-gram, an HMM and an RNN all score a text one symbol at a time from a summary of what came
before: the last ``n - 1`` symbols, the filtering distribution over hidden states, a hidden
vector. :meth:`SequenceLM.token_log_probs` exposes that summary as ``state``, so a text of any
length can be read in chunks (truncated BPTT in training, :meth:`SequenceLM.sequence_nll` in
evaluation) with exactly the result of reading it in one piece. ``state=None`` means "the text
starts here": the model's begin-of-sequence state (a padded context, the initial distribution,
the ``BOS`` input id), so the first symbol is scored too.

Sampling is one loop for all three (:meth:`SequenceLM.sample`); a model only says how it gets
the logits of the next symbol (:meth:`SequenceLM.next_logits`): by carrying its state from
step to step (the cache) or by re-reading the prefix.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..protocol import ARModule
from ..sampling import ancestral_sample, check_sampling, filter_logits
from ..train import evaluating, exact_float32
from ..validation import as_indices, check_int, validation


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

    def next_logits(self, use_cache: bool = True) -> Callable[[torch.Tensor, int], torch.Tensor]:
        """A fresh ``f(x, i) -> (n, K)`` logits of ``p(x_i | x_<i)`` for one sampling run.

        ``x (n, length)`` is the buffer being filled (positions ``>= i`` are not written yet);
        ``f`` is called with ``i`` increasing by one, so with ``use_cache`` it may carry its
        state from call to call; without, it re-reads ``x[:, :i]``. Both give the same logits.
        Subclasses implement it.
        """
        raise NotImplementedError

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        prompt: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        length: int | None = None,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        use_cache: bool = True,
    ) -> torch.Tensor:
        """Ancestral sampling from the conditionals ``p(x_t | x_<t)``: ``(n, length)`` long.

        ``length`` counts the prompt (the first ``C`` symbols of one sample ``(C,)`` or of each
        ``(n, C)``), returned unchanged. Each step filters the logits (``temperature``,
        ``top_k``, ``top_p``: :func:`arnb.sampling.filter_logits`). ``use_cache`` carries the
        model's state from step to step (one update per symbol) instead of re-reading the
        prefix; both draw the same samples from the same generator.
        """
        next_logits = self.next_logits(use_cache)  # first: an unfitted model says so
        length = check_int(length, "length", low=1)
        temperature, top_k, top_p = check_sampling(temperature, top_k, top_p)
        x, start = self.start_buffer(n, prompt, (length,), num_classes=self.vocab_size)

        def filtered(x: torch.Tensor, i: int) -> torch.Tensor:
            logits = next_logits(x, i)
            return filter_logits(logits, temperature=temperature, top_k=top_k, top_p=top_p)

        # the prompt was checked; no range check (a GPU sync) per generated symbol
        with evaluating(self), exact_float32(), validation(False):
            return ancestral_sample(filtered, x, start, generator=generator)
