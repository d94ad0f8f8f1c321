"""Fully visible sigmoid belief network (FVSBN): each binary x_i is a logistic regression on x_<i.

    p(x_i = 1 | x_<i) = sigmoid(b_i + sum_{j < i} W_ij x_j)        (Frey 1996)

"<" is taken in the model's **order**, a permutation of the D dimensions that can be changed.
The weights form a strictly lower-triangular matrix in that order, stored packed, so that
``num_parameters()`` counts exactly the D (D + 1) / 2 free parameters.

This file also holds :class:`BinaryAR`, the base class that the chapter's binary models share
(FVSBN, :mod:`arnb.models.made`, :mod:`arnb.models.joint_table`): order bookkeeping, input
checks, ``log_prob``, per-dimension terms and the ancestral sampler with a prompt.

Order convention, used everywhere in the chapter:

- ``order (D,)``: ``order[k]`` is the dimension generated at step k;
- ``rank (D,)``: its inverse, ``rank[d]`` is the step at which dimension d is generated
  (pass it to :func:`arnb.testing.assert_causal`);
- tensors ``x (B, D)`` and ``forward(x) (B, D)`` are always in the natural layout (raster order
  for images); only a ``prompt`` is given in the model's order (the values of ``order[:C]``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..protocol import ARModule, fixed_length
from ..sampling import sample_bernoulli
from ..validation import as_indices


def check_order(order: torch.Tensor | list[int] | None, dims: int) -> torch.Tensor:
    """``order`` as a ``(dims,)`` long permutation (identity if None); a clear error otherwise."""
    if order is None:
        return torch.arange(dims)
    order = torch.as_tensor(order).flatten()
    if order.dtype.is_floating_point or order.dtype == torch.bool:
        raise TypeError(f"order must hold integer dimension indices, got dtype {order.dtype}")
    order = order.long().cpu()
    if order.numel() != dims or not torch.equal(order.sort().values, torch.arange(dims)):
        raise ValueError(f"order must be a permutation of 0..{dims - 1}, got {order.tolist()}")
    return order


def random_order(dims: int, seed: int) -> torch.Tensor:
    """A random permutation of ``dims`` dimensions, reproducible from ``seed``."""
    return torch.randperm(dims, generator=torch.Generator().manual_seed(seed))


class BinaryAR(ARModule):
    """Base of the chapter's models of ``x (B, D)`` in {0, 1} with a changeable order.

    Subclasses implement ``forward(x) -> (B, D)`` logits of ``p(x_d = 1 | x before d)``.
    """

    def __init__(self, dims: int, order: torch.Tensor | list[int] | None = None):
        super().__init__()
        if dims < 1:
            raise ValueError(f"dims must be >= 1, got {dims}")
        self.dims = dims
        order = check_order(order, dims)
        self.register_buffer("order", order)
        self.register_buffer("rank", torch.argsort(order))

    def _set_order_buffers(self, order: torch.Tensor | list[int] | None) -> torch.Tensor:
        order = check_order(order, self.dims).to(self.order.device)
        self.order.copy_(order)
        self.rank.copy_(torch.argsort(order))
        return order

    def num_free_parameters(self) -> int:
        """Parameters that shape the distribution (subclasses discount masked-out weights)."""
        return self.num_parameters()

    def _check_input(self, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        """``x (B, D)`` of any integer dtype with values in {0, 1}, as ``long``."""
        return as_indices(x, 2, (self.dims,), name=name)

    def log_prob_terms(self, x: torch.Tensor) -> torch.Tensor:
        """Per-dimension log-probabilities ``log p(x_d | x before d)``: ``x (B, D) -> (B, D)``
        nats."""
        x = self._check_input(x)
        logits = self(x)
        # log sigmoid(l) if x = 1, log sigmoid(-l) if x = 0; stable for any logit.
        return -F.binary_cross_entropy_with_logits(logits, x.to(logits.dtype), reduction="none")

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x) = sum_d log p(x_d | x before d)``: ``x (B, D)`` in {0,1} -> ``(B,)`` nats."""
        return self.log_prob_terms(x).sum(-1)

    def conditional_logit(self, x: torch.Tensor, step: int) -> torch.Tensor:
        """Logit of ``p(x_{order[step]} = 1 | earlier dimensions)``: ``x (B, D) -> (B,)``.

        Only the dimensions generated before ``step`` may influence the result.
        """
        return self(x)[:, int(self.order[step])]

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        prompt: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        length: int | None = None,
        progress: bool = False,
    ) -> torch.Tensor:
        """Ancestral sampling: ``(n, D)`` long in {0, 1}, one dimension per step, in the model's
        order.

        ``prompt (C,)`` or ``(n, C)`` holds the values of the first C dimensions *in the model's
        order* (``order[:C]``); they are kept, the other D - C dimensions are drawn. Each draw
        uses one uniform number per row from ``generator``, so a seed fixes the samples.
        ``length`` may only be None or D (the model draws whole images).
        """
        fixed_length(length, self.dims)
        # the prompt in the model's order, then moved to its dimensions in the natural layout
        in_order, c = self.start_buffer(n, prompt, (self.dims,), num_classes=2)
        order = self.order.tolist()  # Python ints: no device lookup per step
        x = torch.zeros_like(in_order)
        x[:, order] = in_order
        steps = range(c, self.dims)
        if progress:
            from tqdm.auto import tqdm

            steps = tqdm(steps, desc="sampling", leave=False)
        for k in steps:
            # D - C passes through the network: each draw needs the ones before it.
            x[:, order[k]] = sample_bernoulli(self.conditional_logit(x, k), generator).to(x.device)
        return x


class FVSBN(BinaryAR):
    """Logistic autoregressive model of ``x (B, D)`` in {0, 1}: D (D + 1) / 2 parameters."""

    def __init__(self, dims: int, order: torch.Tensor | list[int] | None = None):
        super().__init__(dims, order)
        # Packed strictly-lower-triangular weights in the model's order: W[k, l] for l < k.
        self.weight = nn.Parameter(torch.zeros(dims * (dims - 1) // 2))
        self.bias = nn.Parameter(torch.zeros(dims))  # per step k of the order
        rows, cols = torch.tril_indices(dims, dims, offset=-1)
        self.register_buffer("_rows", rows, persistent=False)
        self.register_buffer("_cols", cols, persistent=False)

    def set_order(self, order: torch.Tensor | list[int]) -> None:
        """Use another order (the weights keep their positions in the triangle; retrain after)."""
        self._set_order_buffers(order)

    def weight_matrix(self) -> torch.Tensor:
        """The ``(D, D)`` weights in the natural layout: entry (d, e) is how x_e moves x_d's
        logit."""
        w = self.weight.new_zeros(self.dims, self.dims)
        w = w.index_put((self._rows, self._cols), self.weight)  # in the model's order
        return w[self.rank][:, self.rank]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, D)`` of ``p(x_d = 1 | x before d)`` for ``x (B, D)`` (long, or float for
        probes)."""
        x = x.to(self.weight.dtype)
        return x @ self.weight_matrix().T + self.bias[self.rank]

    @torch.no_grad()
    def init_bias(self, data: torch.Tensor, eps: float = 1e-3) -> None:
        """Start each bias at the logit of its pixel's mean in ``data (N, D)``: a fast, sane
        start."""
        p = data.float().mean(0).clamp(eps, 1 - eps).to(self.bias)
        self.bias.copy_(torch.logit(p)[self.order])
