"""Recurrent character language models: vanilla (Elman) RNN, GRU and LSTM.

An RNN is the deterministic cousin of the HMM: the state that summarises ``x_<t`` is a vector
``h_t = f(h_{t-1}, x_{t-1})`` instead of a distribution over discrete states, and the
conditional is ``p(x_t | x_<t) = softmax(W h_t + b)`` {cite}`elman1990,hochreiter1997,cho2014`.

Inputs are the previous symbol, with an extra begin-of-text id ``K`` in front of a text, so that
``p(x_0)`` is a real conditional too and ``log_prob`` covers every symbol. Long texts train with
*truncated* backpropagation through time: :class:`StreamBatches` cuts the text into ``B``
parallel streams and serves consecutive chunks, the state is carried from chunk to chunk, and
gradients stop at chunk boundaries (``detach_state``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..protocol import ARModule, check_discrete
from ..sampling import ancestral_sample, filter_logits

CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


@dataclass
class RNNConfig:
    vocab_size: int = 65
    cell: str = "lstm"  # "rnn" (tanh Elman), "gru" or "lstm"
    embed: int = 64
    hidden: int = 256
    layers: int = 2
    dropout: float = 0.0  # between layers and before the output layer


State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def detach_state(state: State | None) -> State | None:
    """Cut the graph at a chunk boundary (truncated BPTT) while keeping the values."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


class CharRNN(ARModule):
    """A character LM ``embedding -> RNN/GRU/LSTM (layers) -> linear`` over ``vocab_size`` symbols."""

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

    def step(self, inputs: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """``inputs (B, T)`` previous ids (``K`` = begin of text) -> ``(logits (B, T, K), state)``.

        ``logits[:, t]`` parameterise the symbol that follows ``inputs[:, t]``.
        """
        check_discrete(inputs, self.vocab_size + 1, name="inputs")
        h, state = self.rnn(self.embed(inputs), state)
        return self.head(self.drop(h)), state

    def shift(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs for modelling ``x (B, T)`` from its start: ``[BOS, x_0, ..., x_{T-2}]``."""
        bos = torch.full_like(x[:, :1], self.bos)
        return torch.cat([bos, x[:, :-1]], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, T) long -> (B, T, K)`` logits of every conditional ``p(x_t | x_<t)``."""
        check_discrete(x, self.vocab_size)
        if x.dim() != 2 or x.shape[1] == 0:
            raise ValueError(f"x must have shape (batch, time>0), got {tuple(x.shape)}")
        return self.step(self.shift(x))[0]

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, T) long -> (B,)`` log-probability of each text in nats."""
        logp = F.log_softmax(self(x).float(), dim=-1)
        return logp.gather(-1, x.unsqueeze(-1)).squeeze(-1).sum(-1)

    @torch.no_grad()
    def sequence_nll(self, ids: torch.Tensor, chunk: int = 1024) -> float:
        """Mean nats per symbol of one long 1-D text, carrying the state through all of it (exact)."""
        if ids.dim() != 1 or ids.numel() == 0:
            raise ValueError("sequence_nll expects a non-empty 1-D tensor of ids")
        check_discrete(ids, self.vocab_size, name="ids")
        was_training = self.training
        self.eval()
        ids = ids.to(self.device)
        inputs = self.shift(ids.unsqueeze(0))[0]
        state, total = None, 0.0
        for i in range(0, len(ids), chunk):
            logits, state = self.step(inputs[i : i + chunk].unsqueeze(0), state)
            total += float(F.cross_entropy(logits[0].float(), ids[i : i + chunk], reduction="sum"))
        self.train(was_training)
        return total / len(ids)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        length: int,
        prompt: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        use_cache: bool = True,
    ) -> torch.Tensor:
        """``(n, length)`` long samples; ``prompt (C,)`` or ``(n, C)`` fixes the first C symbols.

        With ``use_cache`` the recurrent state is carried (one step per symbol); without it every
        step re-reads the whole prefix. Both draw the same samples from the same generator.
        """
        was_training = self.training
        self.eval()
        cache = {"state": None, "upto": 0}

        def next_logits(x: torch.Tensor, i: int) -> torch.Tensor:
            if use_cache:
                # feed the symbols written since the last call (BOS first at the very start)
                new = self.shift(x[:, : i + 1])[:, cache["upto"] : i + 1]
                logits, cache["state"] = self.step(new, cache["state"])
                cache["upto"] = i + 1
            else:
                logits, _ = self.step(self.shift(x[:, : i + 1]))
            return filter_logits(logits[:, -1].float(), temperature, top_k, top_p)

        out = ancestral_sample(next_logits, n, length, prompt, generator, self.device)
        self.train(was_training)
        return out


class StreamBatches:
    """Consecutive chunks of ``B`` parallel streams of one long text, for truncated BPTT.

    Each epoch starts the streams at a random offset (so chunk boundaries move), and iterating
    yields ``(inputs (B, T), targets (B, T), first)`` where ``first`` is True on the first chunk
    of an epoch: the model must then start from a fresh state (inputs begin with BOS).
    """

    def __init__(self, ids: torch.Tensor, batch_size: int, chunk: int, bos: int, seed: int = 0):
        if ids.dim() != 1:
            raise ValueError("ids must be a 1-D tensor")
        self.stream_len = (len(ids) - chunk) // batch_size
        if self.stream_len < chunk:
            raise ValueError(
                f"text of {len(ids)} symbols too short for {batch_size} streams of chunks of {chunk}"
            )
        self.ids, self.B, self.T, self.bos = ids, batch_size, chunk, bos
        self.g = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.stream_len // self.T

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, bool]]:
        offset = int(torch.randint(0, self.T, (1,), generator=self.g))
        n = len(self) * self.T
        starts = offset + torch.arange(self.B) * self.stream_len
        streams = self.ids[starts.unsqueeze(1) + torch.arange(n)]  # (B, n)
        inputs = torch.cat(
            [torch.full((self.B, 1), self.bos, dtype=torch.long), streams[:, :-1]], dim=1
        )
        for k in range(len(self)):
            sl = slice(k * self.T, (k + 1) * self.T)
            yield inputs[:, sl], streams[:, sl], k == 0


class TBPTTLoss:
    """``loss_fn(model, batch)`` for :func:`arnb.train.train` that carries the state between chunks.

    Mean nats per symbol of a chunk of :class:`StreamBatches`. A model with ``step(inputs, state)``
    (the RNNs) reads the previous symbols; a model with ``filter(targets, state)`` (the HMM)
    absorbs each symbol into its state itself. Either way the state is detached after each chunk.
    """

    def __init__(self):
        self.state = None

    def __call__(self, model: nn.Module, batch) -> torch.Tensor:
        inputs, targets, first = batch
        if first:
            self.state = None
        if hasattr(model, "step"):
            logits, state = model.step(inputs, self.state)
            loss = F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1)
            )
        else:
            token_lp, state = model.filter(targets, self.state)
            loss = -token_lp.mean()
        self.state = detach_state(state)
        return loss
