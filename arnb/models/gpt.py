"""A decoder-only Transformer (GPT) over token ids, in one readable file.

The model is the chain rule of chapter 6, ``log p(x) = sum_t log p(x_t | x_<t)``, with every
conditional computed at once:

    inputs (B, T) = [BOS, x_0, ..., x_{T-2}]
        -> token embedding + position embedding (B, T, C)
        -> n_layer pre-LayerNorm blocks: x + attn(ln(x)), then x + mlp(ln(x))
        -> final LayerNorm -> linear head tied to the token embedding -> logits (B, T, K)

``logits[:, t]`` parameterise ``p(x_t | x_<t)``. The input ``BOS = vocab_size`` (begin of
sequence) is read before ``x_0``, so the first token is scored too and the probabilities of all
``K**T`` sequences sum to one; it is an input only, never a token the model outputs. Causal
self-attention keeps position t from seeing inputs after it. Attention exists in two
implementations with the same weights: ``"explicit"`` (softmax of masked scores, written out,
so the attention map can be looked at) and ``"sdpa"`` (``F.scaled_dot_product_attention``, a
fused kernel such as FlashAttention on GPUs). Tests check they agree and that both are causal.

Generation keeps a :class:`KVCache` of every layer's keys and values, so each new token costs
one position of work instead of re-running the whole prefix. The cached and uncached paths
compute the same conditionals, and with the same generator they return the same tokens.

Follows nanoGPT's ``model.py`` (Karpathy, 2022) in layout and initialisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..protocol import ARModule
from ..sampling import check_sampling, filter_logits, sample_categorical
from ..train import evaluating, exact_float32
from ..validation import as_indices, check_int, validation

ATTENTION_IMPLS = ("sdpa", "explicit")


@dataclass
class GPTConfig:
    """Sizes of a GPT.

    ``vocab_size`` tokens are modelled (the input embedding has one more row, for BOS), and
    ``block_size`` is the context: the model reads at most that many inputs, so it scores
    sequences of up to ``block_size`` tokens (BOS plus the first ``block_size - 1`` as inputs).
    """

    vocab_size: int
    block_size: int = 256
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 384
    dropout: float = 0.0
    bias: bool = False  # biases in Linear and LayerNorm: slightly worse and slower without gain
    attention: str = "sdpa"  # "sdpa" (fused) or "explicit" (written-out mask and softmax)

    def __post_init__(self):
        if self.vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2, got {self.vocab_size}")
        if self.block_size < 1 or self.n_layer < 1 or self.n_head < 1:
            raise ValueError("block_size, n_layer and n_head must be >= 1")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.attention not in ATTENTION_IMPLS:
            raise ValueError(f"attention must be one of {ATTENTION_IMPLS}, got {self.attention!r}")


class KVCache:
    """Keys and values of every layer for the positions ``[0, length)`` read so far.

    Buffers of shape ``(n_layer, B, n_head, block_size, head_dim)`` are filled left to right;
    each forward pass with the cache writes its new positions and then advances ``length``.
    """

    def __init__(self, config: GPTConfig, batch_size: int, device, dtype=torch.float32):
        shape = (
            config.n_layer,
            batch_size,
            config.n_head,
            config.block_size,
            config.n_embd // config.n_head,
        )
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0

    @property
    def capacity(self) -> int:
        return self.k.shape[3]

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new ``k, v (B, H, T, hd)`` after the cached ones.

        Returns all keys and values so far, ``(B, H, length + T, hd)`` each.
        """
        start, end = self.length, self.length + k.shape[2]
        self.k[layer, :, :, start:end] = k.to(self.k.dtype)
        self.v[layer, :, :, start:end] = v.to(self.v.dtype)
        return self.k[layer, :, :, :end].to(k.dtype), self.v[layer, :, :, :end].to(v.dtype)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position t attends to positions <= t only."""

    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.n_head, self.layer, self.dropout = config.n_head, layer, config.dropout
        self.impl = config.attention
        self.qkv = nn.Linear(
            config.n_embd, 3 * config.n_embd, bias=config.bias
        )  # all heads at once
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        # mask[i, j] = True where query i may look at key j (j <= i). Boolean with -inf fill,
        # never a large finite negative number, which a low-precision softmax can turn into a
        # leak.
        mask = torch.tril(torch.ones(config.block_size, config.block_size, dtype=torch.bool))
        self.register_buffer("mask", mask, persistent=False)
        self.last_attention: torch.Tensor | None = None  # (B, H, T, T) when keep_attention is set
        self.keep_attention = False

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """``x (B, T, C) -> (B, T, C)``; with ``cache``, x holds positions ``cache.length ..``."""
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        # (B, T, C) -> (B, H, T, hd): each head attends in its own hd-dimensional subspace
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        offset = 0
        if cache is not None:
            offset = cache.length
            k, v = cache.update(self.layer, k, v)
        # queries are positions offset..offset+T-1, keys 0..offset+T-1: one slice of the big mask
        mask = self.mask[offset : offset + T, : offset + T]
        dropout = self.dropout if self.training else 0.0
        if self.impl == "explicit" or self.keep_attention:
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(k.shape[-1])  # (B, H, T, offset+T)
            scores = scores.masked_fill(~mask, float("-inf"))
            att = F.softmax(scores.float(), dim=-1).to(q.dtype)
            if self.keep_attention:
                self.last_attention = att.detach()
            y = self.attn_dropout(att) @ v
        elif offset == 0:
            # the whole sequence at once: the fused kernel builds the causal mask itself
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
        elif T == 1:
            # one new position after the cached ones may read all of them: no mask to apply
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again
        return self.resid_dropout(self.proj(y))


class MLP(nn.Module):
    """Position-wise feed-forward network, 4x wide, GELU."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-LayerNorm residual block: normalise, transform, add back (a clean residual path)."""

    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, layer)
        self.ln2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cache)
        return x + self.mlp(self.ln2(x))


class GPT(ARModule):
    """Decoder-only Transformer language model over ``vocab_size`` token ids.

    Follows :mod:`arnb.protocol`: ``forward(x)`` gives the logits of every conditional of
    ``x (B, T)``, ``log_prob(x)`` sums all ``T`` of them, ``nll(x)`` is the training loss in
    nats per token and ``sample(n, ...)`` draws new sequences. :meth:`next_token_logits` is the
    Transformer itself on raw inputs (BOS included), with an optional :class:`KVCache`, and
    :meth:`sequence_nll` scores a text longer than the context.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        # vocab_size + 1 rows: the last one is BOS, read before x_0 and never predicted
        self.wte = nn.Embedding(config.vocab_size + 1, config.n_embd)  # token embedding
        self.wpe = nn.Embedding(config.block_size, config.n_embd)  # learned position embedding
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):  # GPT-2: scale the residual-path outputs with depth
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @property
    def bos(self) -> int:
        """The begin-of-sequence input id, ``vocab_size``: read first, never generated."""
        return self.config.vocab_size

    @property
    def block_size(self) -> int:
        return self.config.block_size

    @property
    def head_weight(self) -> torch.Tensor:
        """The output head ``(K, C)``: the token embedding without its BOS row.

        Weight tying (Press & Wolf, 2017): the head scores a hidden state against every
        token's embedding, so one matrix serves both ends and saves ``K * C`` parameters. BOS
        has an embedding (it is read) but no output (it is never predicted), hence the slice.
        """
        return self.wte.weight[: self.vocab_size]

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Parameter count (the tied head counted once); optionally without position embeddings."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.wpe.weight.numel() if non_embedding else n

    def set_attention(self, impl: str) -> GPT:
        """Switch every layer to the ``"sdpa"`` or ``"explicit"`` attention (same weights)."""
        if impl not in ATTENTION_IMPLS:
            raise ValueError(f"attention must be one of {ATTENTION_IMPLS}, got {impl!r}")
        self.config.attention = impl
        for block in self.blocks:
            block.attn.impl = impl
        return self

    # ------------------------------------------------------------------ the Transformer

    def _tokens(self, x: torch.Tensor, name: str = "x", num_classes: int | None = None):
        """``x`` as ``(B, T)`` long ids in ``[0, num_classes)`` (values checked if validating)."""
        if not isinstance(x, torch.Tensor) or x.dim() != 2:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} must be a (batch, length) tensor of token ids, got {got}")
        return as_indices(x, num_classes or self.vocab_size, name=name)

    def with_bos(self, x: torch.Tensor) -> torch.Tensor:
        """``[BOS, x_0, ..., x_{T-1}]``: ``x (B, T) -> (B, T + 1)`` inputs."""
        bos = torch.full((x.shape[0], 1), self.bos, dtype=torch.long, device=x.device)
        return torch.cat([bos, x.long()], dim=1)

    def next_token_logits(self, inputs: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """The Transformer: ``inputs (B, T)`` ids in ``[0, vocab_size]`` -> logits ``(B, T, K)``.

        ``logits[:, t]`` is the distribution of the token that follows ``inputs[:, :t+1]``;
        ``inputs`` normally start with BOS (:meth:`with_bos`). With a ``cache``, ``inputs``
        are the positions that follow the cached ones, and the cache advances past them.
        """
        inputs = self._tokens(inputs, "inputs", self.vocab_size + 1)
        offset = 0 if cache is None else cache.length
        B, T = inputs.shape
        if offset + T > self.block_size:
            raise ValueError(
                f"{offset + T} inputs are more than the context block_size={self.block_size}; "
                "crop them (the model has no position embedding beyond that)"
            )
        pos = torch.arange(offset, offset + T, device=inputs.device)
        h = self.drop(self.wte(inputs) + self.wpe(pos))  # (B, T, C): what each token is, where
        for block in self.blocks:
            h = block(h, cache)
        if cache is not None:
            cache.length += T
        return F.linear(self.ln_f(h), self.head_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of every conditional: ``x (B, T) -> (B, T, K)``, row t for ``p(x_t | x_<t)``.

        ``x`` may hold up to ``block_size`` tokens; the last one is not read (nothing follows
        it), and BOS is read in front of ``x_0``.
        """
        x = self._tokens(x)
        if x.shape[1] > self.block_size:
            raise ValueError(
                f"x has {x.shape[1]} tokens, more than the context block_size={self.block_size}; "
                "score longer texts with sequence_nll"
            )
        if x.numel() == 0:  # no rows or no tokens: nothing to compute
            return torch.zeros(*x.shape, self.vocab_size, device=x.device, dtype=self.dtype)
        with validation(False):  # x was checked; BOS is the only other input id
            return self.next_token_logits(self.with_bos(x)[:, :-1])

    def token_log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x_t | x_<t)`` for every t: ``x (B, T) -> (B, T)`` nats, in the model's dtype."""
        logits = self(x)
        # log-softmax in at least float32 (bf16 logits under autocast), float64 if the model is
        logp = F.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
        return logp.gather(-1, x.long().unsqueeze(-1)).squeeze(-1).to(self.dtype)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x) = sum_t log p(x_t | x_<t)`` in nats over all T tokens: ``(B, T) -> (B,)``."""
        return self.token_log_probs(x).sum(-1)

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        """The training loss: mean nats per token of ``x (B, T)`` (raises on an empty ``x``)."""
        if x.numel() == 0:
            raise ValueError(
                f"nll needs at least one token, got x of shape {tuple(x.shape)}: the mean "
                "over no tokens is undefined"
            )
        return super().nll(x)

    @torch.no_grad()
    def sequence_nll(
        self, ids: torch.Tensor, *, stride: int | None = None, batch_size: int = 64
    ) -> float:
        """Mean nats per token of one long text ``ids (N,)``, every token scored exactly once.

        The text is read in windows of ``block_size`` tokens, **each window read after BOS**
        (as in training, where every random window starts with BOS). Windows start every
        ``stride`` tokens (default ``block_size``: consecutive windows that do not overlap).
        The first window scores all its tokens, every later one only its last ``stride``
        tokens, the ones no earlier window scored. With the default, a token is predicted from
        the 0 to ``block_size - 1`` tokens before it in its window; a smaller stride gives each
        scored token at least ``block_size - stride`` tokens of context, at more cost.
        Computed in float32 (no autocast) and summed in float64.
        """
        if not isinstance(ids, torch.Tensor) or ids.dim() != 1:
            got = tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__
            raise ValueError(f"ids must be a 1-D tensor of token ids, got {got}")
        if len(ids) == 0:
            raise ValueError("ids is empty: the mean over no tokens is undefined")
        ids = as_indices(ids, self.vocab_size, name="ids")
        T, N = self.block_size, len(ids)
        s = T if stride is None else check_int(stride, "stride", low=1, high=T)
        batch_size = check_int(batch_size, "batch_size", low=1)
        # window k starts at k * s and scores from (k - 1) * s + T on; the last reaches N
        starts = torch.arange(0, max(N - T, 0) + s, s)
        full = starts[starts + T <= N]  # windows of exactly T tokens; at most one shorter one
        total = 0.0
        with evaluating(self), validation(False):
            offsets = torch.arange(min(T, N))
            for i in range(0, len(full), batch_size):
                first = full[i : i + batch_size]
                w = ids[first.unsqueeze(1) + offsets].to(self.device)
                logp = self.token_log_probs(w).double()
                scored = (first.unsqueeze(1) == 0) | (offsets >= T - s)  # (b, T)
                total -= float(logp[scored.to(logp.device)].sum())
            if len(full) < len(starts):  # the remainder, shorter than a window
                st = int(starts[-1])
                logp = self.token_log_probs(ids[st:].unsqueeze(0).to(self.device)).double()
                total -= float(logp[0, (0 if st == 0 else T - s) :].sum())
        return total / N

    # ------------------------------------------------------------------ sampling

    def new_cache(self, batch_size: int) -> KVCache:
        return KVCache(self.config, batch_size, self.device, self.dtype)

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
        greedy: bool = False,
        use_cache: bool = True,
        progress: bool = False,
    ) -> torch.Tensor:
        """``n`` sequences ``(n, length)`` long: the ``prompt`` followed by new tokens.

        ``prompt`` holds the first ``C`` tokens of one sequence ``(C,)`` or of each ``(n, C)``;
        without one, sampling starts from BOS alone. ``length`` (prompt included) defaults to
        ``block_size``. Each step filters the last logits (``temperature``, ``top_k``,
        ``top_p``: :func:`arnb.sampling.filter_logits`) and draws one token per row with
        :func:`arnb.sampling.sample_categorical` (one uniform per row and step, all drawn from
        ``generator`` on the CPU before the first step), or
        takes the most probable token when ``greedy``. The knobs are checked either way.

        The model reads BOS and at most ``block_size - 1`` tokens. When the text outgrows that
        window, both paths restart it at BOS and the last ``block_size // 2`` tokens (the cache
        is refilled once, then grows again), so ``use_cache=True`` and ``False`` condition on
        exactly the same tokens and give the same output; only the amount of work differs (both
        in float32 without TF32 on a GPU, :func:`arnb.train.exact_float32`, so that round-off
        does not tip a near tie). Inputs are checked once per call; the loop itself never waits
        for the GPU.
        """
        temperature, top_k, top_p = check_sampling(temperature, top_k, top_p)
        length = self.block_size if length is None else check_int(length, "length", low=1)
        x, start = self.start_buffer(n, prompt, (length,), num_classes=self.vocab_size)
        keep = self.block_size // 2  # tokens kept when the window restarts
        steps = range(start, length)
        if progress:
            from tqdm.auto import tqdm

            desc = "sampling" + (" (cache)" if use_cache else "")
            steps = tqdm(steps, desc=desc, leave=False)
        # one uniform per row and step, drawn up front and moved to the device once: a copy
        # from the host inside the loop would make every step wait for the GPU
        if not greedy:
            uniforms = torch.rand((length - start, x.shape[0]), generator=generator)
            uniforms = uniforms.to(self.device)
        first, cache = 0, None  # the model reads BOS and x[:, first:t] to predict x[:, t]
        with evaluating(self), exact_float32(), validation(False):
            for t in steps:
                if t - first + 1 > self.block_size:  # window full: restart it
                    first, cache = t - keep, None
                if not use_cache:  # recompute the whole window
                    logits = self.next_token_logits(self.with_bos(x[:, first:t]))[:, -1]
                elif cache is None:  # fill a fresh cache with the window
                    cache = self.new_cache(x.shape[0])
                    logits = self.next_token_logits(self.with_bos(x[:, first:t]), cache)[:, -1]
                else:  # one new position: the keys and values of the others are cached
                    logits = self.next_token_logits(x[:, t - 1 : t], cache)[:, -1]
                if greedy:
                    x[:, t] = logits.argmax(-1)
                else:
                    logits = filter_logits(logits, temperature, top_k, top_p)
                    x[:, t] = sample_categorical(logits, uniform=uniforms[t - start])
        return x

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Attention weights of every layer and head: ``x (B, T) -> (n_layer, B, H, T, T)``.

        Query t is the position that predicts ``x_t``: its inputs are BOS, ``x_0..x_{t-1}``
        (key 0 is BOS, key s > 0 the token ``x_{s-1}``).
        """
        for block in self.blocks:
            block.attn.keep_attention = True
        try:
            self(x)
            return torch.stack([block.attn.last_attention for block in self.blocks])
        finally:
            for block in self.blocks:
                block.attn.keep_attention = False
                block.attn.last_attention = None

    def configure_optimizer(
        self, lr: float, weight_decay: float = 0.1, betas: tuple[float, float] = (0.9, 0.99)
    ) -> torch.optim.AdamW:
        """AdamW that decays matrices only (not LayerNorm gains, biases); fused on CUDA."""
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        fused = self.device.type == "cuda"
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused)
