"""A decoder-only Transformer (GPT) over token ids, in one readable file.

The model is the conditional ``p(x_{t+1} | x_<=t)`` of chapter 6, computed for every position
of a sequence at once:

    ids (B, T) -> token embedding + position embedding (B, T, C)
               -> n_layer pre-LayerNorm blocks: x + attn(ln(x)), then x + mlp(ln(x))
               -> final LayerNorm -> linear head tied to the token embedding -> logits (B, T, K)

``logits[:, t]`` parameterise the distribution of token ``t + 1`` given tokens ``0..t``; causal
self-attention is what keeps position t from seeing tokens after it. Attention exists in two
implementations with the same weights: ``"explicit"`` (softmax of masked scores, written out, so
the attention map can be looked at) and ``"sdpa"`` (``F.scaled_dot_product_attention``, a fused
kernel such as FlashAttention on GPUs). Tests check they agree and that both are causal.

Generation keeps a :class:`KVCache` of every layer's keys and values, so each new token costs one
position of work instead of re-running the whole prefix. The cached and uncached paths compute the
same conditionals, and with the same generator they return the same tokens.

Follows nanoGPT's ``model.py`` (Karpathy, 2022) in layout and initialisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..protocol import ARModule, check_discrete
from ..sampling import filter_logits, sample_categorical

ATTENTION_IMPLS = ("sdpa", "explicit")


@dataclass
class GPTConfig:
    """Sizes of a GPT. ``block_size`` is the context: the longest sequence the model reads."""

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
        """Store the new ``k, v (B, H, T, hd)`` after the cached ones; return all ``(B, H, length+T, hd)``."""
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
        # mask[i, j] = True where query i may look at key j (j <= i). Boolean with -inf fill, never a
        # large finite negative number, which a low-precision softmax can turn into a leak.
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
    """Pre-LayerNorm residual block: normalise, transform, add back (keeps a clean residual path)."""

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
    """Decoder-only Transformer language model over ``vocab_size`` token ids."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)  # token embedding
        self.wpe = nn.Embedding(config.block_size, config.n_embd)  # learned position embedding
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # Weight tying (Press & Wolf, 2017): the output head scores a hidden state against every
        # token's embedding, so one matrix serves both ends and saves K*C parameters.
        self.head.weight = self.wte.weight
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
    def block_size(self) -> int:
        return self.config.block_size

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

    def _check_ids(self, idx: torch.Tensor, name: str = "idx") -> None:
        if not isinstance(idx, torch.Tensor) or idx.dim() != 2:
            raise ValueError(
                f"{name} must be a (batch, length) tensor of token ids, got "
                f"{tuple(idx.shape) if isinstance(idx, torch.Tensor) else type(idx).__name__}"
            )
        check_discrete(idx, self.vocab_size, name=name)
        if idx.shape[1] == 0:
            raise ValueError(f"{name} is empty: need at least one token")

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Logits of the next token at every position: ``idx (B, T) long -> (B, T, K)``.

        ``logits[:, t]`` is the distribution of token ``t + 1`` given tokens ``<= t``. With a
        ``cache``, ``idx`` holds the positions that follow the cached ones.
        """
        self._check_ids(idx)
        return self._logits(idx, cache)

    def _logits(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """:meth:`forward` without the value checks (which cost a device sync per call)."""
        offset = 0 if cache is None else cache.length
        T = idx.shape[1]
        if offset + T > self.block_size:
            raise ValueError(
                f"sequence of length {offset + T} is longer than the context block_size="
                f"{self.block_size}; crop it (the model has no position embedding beyond that)"
            )
        pos = torch.arange(offset, offset + T, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))  # (B, T, C): what each token is, and where
        for block in self.blocks:
            x = block(x, cache)
        if cache is not None:
            cache.length += T
        return self.head(self.ln_f(x))

    def loss(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy in nats per token of ``targets (B, T)`` given ``idx (B, T)``.

        The training loss. It skips the id range check of :meth:`forward` (a device sync per step);
        out-of-range ids still fail inside the embedding and the cross-entropy.
        """
        if idx.shape != targets.shape or idx.dim() != 2:
            raise ValueError(
                f"idx and targets must both be (B, T), got {tuple(idx.shape)} and "
                f"{tuple(targets.shape)}"
            )
        logits = self._logits(idx)
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.reshape(-1))

    def token_log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x_t | x_<t)`` for ``t = 1..T-1``: ``x (B, T) -> (B, T-1)`` nats."""
        self._check_ids(x, "x")
        if x.shape[1] < 2:
            raise ValueError("x needs at least two tokens: the first one conditions the rest")
        logp = F.log_softmax(self(x[:, :-1]).float(), dim=-1)
        return logp.gather(-1, x[:, 1:].unsqueeze(-1)).squeeze(-1)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x_1, ..., x_{T-1} | x_0)`` in nats: ``x (B, T) long -> (B,)``.

        A language model conditions on its first token (a prompt or a start symbol) and scores the
        rest; ``-log_prob(x) / (T - 1)`` is the usual mean cross-entropy per token.
        """
        return self.token_log_probs(x).sum(-1)

    def new_cache(self, batch_size: int) -> KVCache:
        return KVCache(self.config, batch_size, self.device, next(self.parameters()).dtype)

    @torch.no_grad()
    def generate(
        self,
        prompt: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        greedy: bool = False,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
        progress: bool = False,
    ) -> torch.Tensor:
        """Continue ``prompt (B, C)`` by ``max_new_tokens`` tokens: returns ``(B, C + new)``.

        Each step filters the last logits (temperature, top-k, top-p via
        :func:`arnb.sampling.filter_logits`) and draws one token per row with
        :func:`arnb.sampling.sample_categorical` (one uniform per row from ``generator``), or takes
        the most probable token when ``greedy``.

        The model reads at most ``block_size`` tokens. When the text outgrows that window, both
        paths restart the window at the last ``block_size // 2`` tokens (the cache is refilled
        once, then grows again), so ``use_cache=True`` and ``False`` condition on exactly the same
        tokens and give the same output; only the amount of work differs.
        """
        if not isinstance(prompt, torch.Tensor):
            raise TypeError(f"prompt must be a tensor of token ids, got {type(prompt).__name__}")
        if prompt.dim() == 1:
            prompt = prompt.unsqueeze(0)
        self._check_ids(prompt, "prompt")
        if prompt.shape[1] > self.block_size:
            raise ValueError(
                f"prompt of {prompt.shape[1]} tokens is longer than the context block_size="
                f"{self.block_size}; shorten it to its last {self.block_size} tokens"
            )
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        if not greedy:  # validate the knobs once, before any work
            filter_logits(torch.zeros(1, 2), temperature, top_k, top_p)
        was_training = self.training
        self.eval()
        x = prompt.to(self.device)
        B, keep = x.shape[0], max(1, self.block_size // 2)
        start, cache = 0, None  # the window is x[:, start:]
        steps = range(max_new_tokens)
        if progress:
            from tqdm.auto import tqdm

            steps = tqdm(steps, desc="generating" + (" (cache)" if use_cache else ""), leave=False)
        for _ in steps:
            if x.shape[1] - start > self.block_size:  # window full: restart it
                start, cache = x.shape[1] - keep, None
            if not use_cache:
                logits = self(x[:, start:])[:, -1]  # recompute the whole window
            elif cache is None:  # fill a fresh cache with the window
                cache = self.new_cache(B)
                logits = self(x[:, start:], cache)[:, -1]
            else:  # one new position: the keys and values of the others are cached
                logits = self(x[:, -1:], cache)[:, -1]
            if greedy:
                nxt = logits.argmax(-1)
            else:
                nxt = sample_categorical(
                    filter_logits(logits, temperature, top_k, top_p), generator
                )
            x = torch.cat([x, nxt.unsqueeze(1)], dim=1)
        self.train(was_training)
        return x

    @torch.no_grad()
    def sample(
        self,
        n: int,
        prompt: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        max_new_tokens: int | None = None,
        start_id: int = 0,
        **kwargs,
    ) -> torch.Tensor:
        """``n`` sequences, each the ``prompt (C,)`` or ``(n, C)`` followed by new tokens.

        Without a prompt, sampling starts from the single token ``start_id`` (for the character
        tokenizer of Tiny Shakespeare, id 0 is a newline). ``max_new_tokens`` defaults to filling
        one context; other keywords go to :meth:`generate`.
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if prompt is None:
            prompt = torch.full((1,), start_id, dtype=torch.long)
        prompt = torch.as_tensor(prompt)
        if prompt.dim() == 1:
            prompt = prompt.unsqueeze(0).expand(n, -1)
        if prompt.shape[0] != n:
            raise ValueError(
                f"prompt must have shape (C,) or (n={n}, C), got {tuple(prompt.shape)}"
            )
        if max_new_tokens is None:
            max_new_tokens = max(0, self.block_size - prompt.shape[1])
        return self.generate(prompt, max_new_tokens, generator=generator, **kwargs)

    @torch.no_grad()
    def attention_maps(self, idx: torch.Tensor) -> torch.Tensor:
        """Attention weights of every layer and head: ``idx (B, T) -> (n_layer, B, H, T, T)``."""
        for block in self.blocks:
            block.attn.keep_attention = True
        try:
            self(idx)
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
