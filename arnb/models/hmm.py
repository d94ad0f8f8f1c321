"""A discrete hidden Markov model as an autoregressive model of symbols.

A latent state ``z_t`` in ``{0..S-1}`` follows a Markov chain and emits ``x_t``; the symbols
themselves are *not* Markov of any order, because the state summarises the whole past. The
autoregressive conditional is a mixture over the current state,

    p(x_t | x_<t) = sum_z p(x_t | z_t = z) p(z_t = z | x_<t),

and the *forward algorithm* {cite}`rabiner1989` keeps the filtering distribution
``p(z_t | x_<=t)`` up to date one symbol at a time. Here it runs in log space (a log-sum-exp
over states, done as a stabilised matrix product), so long sequences neither underflow nor lose
precision, and the exact log-likelihood is differentiable: the model trains by gradient descent.
The first symbol is scored through the initial distribution ``pi``, so ``log_prob`` covers all
of ``x``; the filter is the ``state`` that carries a long text from chunk to chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..sampling import sample_categorical
from ..validation import as_indices
from .sequence import SequenceLM


@dataclass
class HMMConfig:
    num_states: int = 64
    vocab_size: int = 65
    init_scale: float = 1.0  # spread of the random initial logits: breaks the symmetry of states


def log_matmul_exp(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """``log(exp(log_a) @ exp(log_b))`` for ``log_a (B, S)`` and ``log_b (S, R)`` -> ``(B, R)``.

    Subtracting the row maximum of ``log_a`` first makes the largest term exactly 1, so the
    product neither underflows nor overflows; a floor on the sum keeps the log and its gradient
    finite when every path into an entry has negligible probability (below 1e-30 of the max).
    """
    return _log_matmul(log_a, torch.exp(log_b))


def _log_matmul(log_a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``log(exp(log_a) @ b)`` with ``b`` already in probability space (exponentiated once per
    pass)."""
    m = log_a.amax(dim=-1, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    return m + torch.log((torch.exp(log_a - m) @ b).clamp_min(1e-30))


class HMM(SequenceLM):
    """Discrete HMM: initial ``pi (S)``, transitions ``A (S, S)``, emissions ``E (S, K)`` as logits.

    ``forward(x)`` gives the log-probabilities ``(B, T, K)`` of every conditional
    ``p(x_t | x_<t)``; ``token_log_probs(x, state)`` carries the filter across chunks of a text.
    """

    def __init__(self, config: HMMConfig):
        super().__init__()
        if config.num_states < 1 or config.vocab_size < 2:
            raise ValueError(f"need num_states >= 1 and vocab_size >= 2, got {config}")
        self.config = config
        S, K = config.num_states, config.vocab_size
        g = torch.Generator().manual_seed(0)
        self.init_logits = nn.Parameter(torch.randn(S, generator=g) * config.init_scale)
        self.trans_logits = nn.Parameter(torch.randn(S, S, generator=g) * config.init_scale)
        self.emit_logits = nn.Parameter(torch.randn(S, K, generator=g) * config.init_scale)

    @property
    def num_states(self) -> int:
        return self.config.num_states

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    def log_params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised ``log pi (S)``, ``log A (S, S)`` (rows: from), ``log E (S, K)``.

        In the model's dtype, and at least float32 (bfloat16 weights are widened).
        """
        dtype = torch.promote_types(self.init_logits.dtype, torch.float32)
        return (
            F.log_softmax(self.init_logits.to(dtype), -1),
            F.log_softmax(self.trans_logits.to(dtype), -1),
            F.log_softmax(self.emit_logits.to(dtype), -1),
        )

    def _forward_algorithm(self, x: torch.Tensor, state, all_logits: bool):
        """The filter over ``x (B, T)``: ``(log p(x_t | x_<t) (B, T), state, all (B, T, K))``.

        ``all`` (only with ``all_logits``, else None) holds the log-probabilities of every symbol
        at every step.
        """
        x = as_indices(x, self.vocab_size, (None,))
        # full precision even under bf16 autocast: log-space sums over thousands of steps need it
        with torch.autocast(x.device.type, enabled=False):
            log_pi, log_A, log_E = self.log_params()
            A, E = log_A.exp(), log_E.exp()  # once per pass, not once per step
            B, T = x.shape
            token_lp, full = [], []
            log_post = None if state is None else state.to(log_pi.dtype)
            for t in range(T):
                # prior over z_t given x_<t: pi at the start, else the filter pushed through A
                prior = log_pi.expand(B, -1) if log_post is None else _log_matmul(log_post, A)
                joint = prior + log_E[:, x[:, t]].T  # log p(z_t, x_t | x_<t)   (B, S)
                lp = torch.logsumexp(joint, dim=-1)  # log p(x_t | x_<t)
                if all_logits:
                    full.append(_log_matmul(prior, E))
                token_lp.append(lp)
                log_post = joint - lp.unsqueeze(-1)  # log p(z_t | x_<=t): the filter
            out = torch.stack(token_lp, dim=1) if T else log_pi.new_zeros(B, 0)
            if all_logits:
                full = torch.stack(full, dim=1) if T else log_pi.new_zeros(B, 0, self.vocab_size)
        return out, log_post, (full if all_logits else None)

    def token_log_probs(self, x: torch.Tensor, state: torch.Tensor | None = None):
        """Run the forward algorithm over ``x (B, T)``: ``(log p(x_t | x_<t) (B, T), state)``.

        ``state (B, S)`` is log ``p(z | x_<t0)`` after the previous chunk of the same text, the
        filter (``None``: ``x`` starts a text and ``z_0 ~ pi``).
        """
        out, state, _ = self._forward_algorithm(x, state, all_logits=False)
        return out, state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, T) -> (B, T, K)`` log-probabilities of ``p(x_t = k | x_<t)`` (normalised
        logits)."""
        return self._forward_algorithm(x, None, all_logits=True)[2]

    def next_logits(self, use_cache: bool = True):
        """Logits of ``p(x_i | x_<i)``: the filter pushed through ``A`` and the emissions.

        With ``use_cache`` the filter is carried from step to step (each symbol costs one
        update); without, it is recomputed from ``x[:, :i]``, the same operations in order.
        """
        log_pi, log_A, log_E = self.log_params()
        A, E = log_A.exp(), log_E.exp()
        cache = {"post": None, "upto": 0}

        def next_logits(x: torch.Tensor, i: int) -> torch.Tensor:
            if not use_cache:
                cache["post"], cache["upto"] = None, 0
            if i > 0:  # absorb the symbols written since the last call into the filter
                _, cache["post"] = self.token_log_probs(x[:, cache["upto"] : i], cache["post"])
                cache["upto"] = i
            post = cache["post"]
            prior = log_pi.expand(x.shape[0], -1) if post is None else _log_matmul(post, A)
            return _log_matmul(prior, E)

        return next_logits

    @torch.no_grad()
    def sample_joint(
        self, n: int, length: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The generative story: draw the state path, then each symbol from its state.

        Returns ``(x, z)``, both ``(n, length)`` long. ``x`` has the same distribution as
        :meth:`sample` (summing out ``z``), which the tests check.
        """
        log_pi, log_A, log_E = self.log_params()
        z = torch.zeros(n, length, dtype=torch.long, device=self.device)
        x = torch.zeros_like(z)
        for t in range(length):
            logits = log_pi.expand(n, -1) if t == 0 else log_A[z[:, t - 1]]
            z[:, t] = sample_categorical(logits, generator)
            x[:, t] = sample_categorical(log_E[z[:, t]], generator)
        return x, z
