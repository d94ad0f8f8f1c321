"""A discrete hidden Markov model as an autoregressive model of symbols.

A latent state ``z_t`` in ``{0..S-1}`` follows a Markov chain and emits ``x_t``; the symbols
themselves are *not* Markov of any order, because the state summarises the whole past. The
autoregressive conditional is a mixture over the current state,

    p(x_t | x_<t) = sum_z p(x_t | z_t = z) p(z_t = z | x_<t),

and the *forward algorithm* {cite}`rabiner1989` keeps the filtering distribution
``p(z_t | x_<=t)`` up to date one symbol at a time. Here it runs in log space (a log-sum-exp
over states, done as a stabilised matrix product), so long sequences neither underflow nor lose
precision, and the exact log-likelihood is differentiable: the model trains by gradient descent.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..protocol import ARModule, check_discrete
from ..sampling import ancestral_sample, filter_logits, sample_categorical


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
    """``log(exp(log_a) @ b)`` with ``b`` already in probability space (exponentiated once per pass)."""
    m = log_a.amax(dim=-1, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    return m + torch.log((torch.exp(log_a - m) @ b).clamp_min(1e-30))


class HMM(ARModule):
    """Discrete HMM: initial ``pi (S)``, transitions ``A (S, S)``, emissions ``E (S, K)`` as logits.

    ``forward(x)`` gives the logits ``(B, T, K)`` of every conditional ``p(x_t | x_<t)``;
    ``filter`` carries the filtering distribution across chunks of a long text.
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
        """Normalised ``log pi (S)``, ``log A (S, S)`` (rows: from), ``log E (S, K)``, in float32."""
        return (
            F.log_softmax(self.init_logits.float(), -1),
            F.log_softmax(self.trans_logits.float(), -1),
            F.log_softmax(self.emit_logits.float(), -1),
        )

    def filter(self, x: torch.Tensor, state: torch.Tensor | None = None, all_logits: bool = False):
        """Run the forward algorithm over ``x (B, T)``.

        ``state (B, S)``: log ``p(z_{t0-1} | x_<t0)`` after the previous chunk of the same text
        (``None``: ``x`` starts a text and ``z_0 ~ pi``). Returns ``(token_log_probs (B, T),
        state (B, S))`` and, with ``all_logits``, also the log-probabilities ``(B, T, K)`` of every
        symbol at every step.
        """
        check_discrete(x, self.vocab_size)
        if x.dim() != 2:
            raise ValueError(f"x must have shape (batch, time), got {tuple(x.shape)}")
        # float32 even under bf16 autocast: log-space sums over thousands of steps need it
        with torch.autocast(x.device.type, enabled=False):
            log_pi, log_A, log_E = self.log_params()
            A, E = log_A.exp(), log_E.exp()  # once per pass, not once per step
            B, T = x.shape
            token_lp, full = [], []
            log_post = None if state is None else state.float()
            for t in range(T):
                # prior over z_t given x_<t: pi at the start, else the filter pushed through A
                if log_post is None:
                    prior = log_pi.expand(B, -1)
                else:
                    prior = _log_matmul(log_post, A)
                joint = prior + log_E[:, x[:, t]].T  # log p(z_t, x_t | x_<t)   (B, S)
                lp = torch.logsumexp(joint, dim=-1)  # log p(x_t | x_<t)
                if all_logits:
                    full.append(_log_matmul(prior, E))
                token_lp.append(lp)
                log_post = joint - lp.unsqueeze(-1)  # log p(z_t | x_<=t): the filter
            out = torch.stack(token_lp, dim=1) if T else x.new_zeros(B, 0, dtype=torch.float32)
            if log_post is None:
                log_post = state
        if all_logits:
            return out, log_post, torch.stack(full, dim=1)
        return out, log_post

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, T) long -> (B, T, K)`` log-probabilities of ``p(x_t = k | x_<t)`` (normalised logits)."""
        return self.filter(x, all_logits=True)[2]

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, T) long -> (B,)`` exact log-likelihood in nats (the forward algorithm)."""
        return self.filter(x)[0].sum(-1)

    @torch.no_grad()
    def sequence_nll(self, ids: torch.Tensor, chunk: int = 4096) -> float:
        """Mean nats per symbol of one long 1-D text, filtering through all of it exactly."""
        if ids.dim() != 1 or ids.numel() == 0:
            raise ValueError("sequence_nll expects a non-empty 1-D tensor of ids")
        ids = ids.to(self.device)
        state, total = None, 0.0
        for i in range(0, len(ids), chunk):
            lp, state = self.filter(ids[i : i + chunk].unsqueeze(0), state)
            total += float(lp.double().sum())
        return -total / len(ids)

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
    ) -> torch.Tensor:
        """Ancestral sampling from the *conditionals* ``p(x_t | x_<t)``: ``(n, length)`` long.

        The filter is carried from step to step (a cache), so each symbol costs one update.
        """
        log_pi, log_A, log_E = self.log_params()
        cache = {"post": None, "upto": 0}

        def next_logits(x: torch.Tensor, i: int) -> torch.Tensor:
            if i > 0:  # absorb the symbols written since the last call into the filter
                _, cache["post"] = self.filter(x[:, cache["upto"] : i], cache["post"])
                cache["upto"] = i
            prior = (
                log_pi.expand(n, -1)
                if cache["post"] is None
                else log_matmul_exp(cache["post"], log_A)
            )
            return filter_logits(log_matmul_exp(prior, log_E), temperature, top_k, top_p)

        return ancestral_sample(next_logits, n, length, prompt, generator, self.device)

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
