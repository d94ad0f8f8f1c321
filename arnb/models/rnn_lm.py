"""Recurrent character language models: vanilla (Elman) RNN, GRU and LSTM.

An RNN is the deterministic cousin of the HMM: the state that summarises ``x_<t`` is a vector
``h_t = f(h_{t-1}, x_{t-1})`` instead of a distribution over discrete states, and the
conditional is ``p(x_t | x_<t) = softmax(W h_t + b)`` {cite}`elman1990,hochreiter1997,cho2014`.

Inputs are the previous symbol, with an extra begin-of-text id ``BOS = K`` (input only, never
generated) in front of a text, so that ``p(x_0)`` is a real conditional too and ``log_prob``
covers every symbol. Long texts train with *truncated* backpropagation through time:
:class:`arnb.data.text.StreamBatches` serves consecutive chunks of parallel streams,
:meth:`CharRNN.token_log_probs` carries the state from chunk to chunk, and :class:`TBPTTLoss`
stops the gradients at chunk boundaries (``detach_state``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..validation import as_indices
from .sequence import SequenceLM

CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


@dataclass
class RNNConfig:
    vocab_size: int = 65
    cell: str = "lstm"  # "rnn" (tanh Elman), "gru" or "lstm"
    embed: int = 64
    hidden: int = 256
    layers: int = 2
    dropout: float = 0.0  # between layers and before the output layer


Hidden = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def detach_state(state):
    """Cut the graph at a chunk boundary (truncated BPTT) while keeping the values.

    Works on any state of :meth:`token_log_probs`: a tensor, None, or tuples of them.
    """
    if isinstance(state, torch.Tensor):
        return state.detach()
    if isinstance(state, tuple):
        return tuple(detach_state(s) for s in state)
    return state


class CharRNN(SequenceLM):
    """A character LM ``embedding -> RNN/GRU/LSTM (layers) -> linear`` over ``vocab_size``
    symbols."""

    def __init__(self, config: RNNConfig):
        super().__init__()
        if config.cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, got {config.cell!r}")
        if config.vocab_size < 2 or config.hidden < 1 or config.layers < 1:
            raise ValueError(f"need vocab_size >= 2, hidden >= 1, layers >= 1; got {config}")
        self.config = config
        K = config.vocab_size
        self.bos = K  # the extra input id that starts every text
        self.embed = nn.Embedding(K + 1, config.embed)
        self.rnn = CELLS[config.cell](
            config.embed,
            config.hidden,
            config.layers,
            batch_first=True,
            dropout=config.dropout if config.layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden, K)

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    def step(
        self, inputs: torch.Tensor, hidden: Hidden | None = None
    ) -> tuple[torch.Tensor, Hidden]:
        """``inputs (B, T)`` previous ids (``K`` = begin of text) -> ``(logits (B, T, K), hidden)``.

        ``logits[:, t]`` parameterise the symbol that follows ``inputs[:, t]``.
        """
        inputs = as_indices(inputs, self.vocab_size + 1, (None,), name="inputs")
        h, hidden = self.rnn(self.embed(inputs), hidden)
        return self.head(self.drop(h)), hidden

    def shift(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs for modelling ``x (B, T)`` from its start: ``[BOS, x_0, ..., x_{T-2}]``."""
        bos = torch.full_like(x[:, :1], self.bos)
        return torch.cat([bos, x[:, :-1]], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, T) integer -> (B, T, K)`` logits of every conditional ``p(x_t | x_<t)``."""
        x = as_indices(x, self.vocab_size, (None,))
        if x.shape[1] == 0:
            raise ValueError(f"x must have shape (batch, time>0), got {tuple(x.shape)}")
        return self.step(self.shift(x))[0]

    def token_log_probs(self, x: torch.Tensor, state=None):
        """``x (B, T) -> (log p(x_t | x_<t) (B, T), state)`` in the model's dtype.

        ``state = (hidden, last (B, 1))``: the recurrent state after the text before ``x``, and
        its last symbol, not read yet (it is the input that predicts ``x_0``). ``None``: ``x``
        starts a text, and its first input is ``BOS``.
        """
        x = as_indices(x, self.vocab_size, (None,))
        if x.shape[1] == 0 or x.shape[0] == 0:  # nothing to read (the RNN refuses empty input)
            return self.head.weight.new_zeros(x.shape), state
        hidden, last = (None, torch.full_like(x[:, :1], self.bos)) if state is None else state
        logits, hidden = self.step(torch.cat([last, x[:, :-1]], dim=1), hidden)
        # widen bf16 logits (autocast) to float32 before the softmax; float64 stays float64
        logp = F.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), -1)
        lp = logp.gather(-1, x.unsqueeze(-1)).squeeze(-1)
        return lp, (hidden, x[:, -1:])

    def next_logits(self, use_cache: bool = True):
        """Logits of ``p(x_i | x_<i)``: the recurrent state carried from step to step with
        ``use_cache`` (one step per symbol), else the whole prefix re-read after ``BOS``."""
        cache = {"hidden": None, "upto": 0}

        def next_logits(x: torch.Tensor, i: int) -> torch.Tensor:
            if use_cache:
                # feed the symbols written since the last call (BOS first at the very start)
                new = self.shift(x[:, : i + 1])[:, cache["upto"] : i + 1]
                logits, cache["hidden"] = self.step(new, cache["hidden"])
                cache["upto"] = i + 1
            else:
                logits, _ = self.step(self.shift(x[:, : i + 1]))
            return logits[:, -1]

        return next_logits


class TBPTTLoss:
    """``loss_fn(model, batch)`` for :func:`arnb.train.train` that carries the state between chunks.

    For a :class:`arnb.data.text.StreamBatches` batch ``(chunk (B, T), first)``: the mean nats
    per symbol that ``model.token_log_probs`` (any :class:`SequenceLM`: RNN or HMM) gives the
    chunk, reading on from the state the previous chunk left (a fresh start when ``first``).
    The state is detached after each chunk, so gradients stop at chunk boundaries.
    """

    def __init__(self):
        self.state = None

    def __call__(self, model: SequenceLM, batch) -> torch.Tensor:
        chunk, first = batch
        if first:
            self.state = None
        token_lp, state = model.token_log_probs(chunk, self.state)
        self.state = detach_state(state)
        return -token_lp.mean()
