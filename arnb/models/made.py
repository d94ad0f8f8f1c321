"""MADE: a masked autoencoder that computes every conditional p(x_d | x before d) in one pass.

Germain et al. (2015). An ordinary MLP ``D -> H -> ... -> D`` becomes autoregressive when each
weight matrix is multiplied by a 0/1 mask built from *degrees*:

- input unit d gets degree ``m_0(d) = rank[d] + 1`` (1..D: its step in the order, from 1);
- hidden unit k of layer l gets a degree ``m_l(k)`` in ``[min m_{l-1}, D - 1]``;
- a hidden unit may see a unit of the layer below iff ``m_l(k) >= m_{l-1}(k')``;
- output d may see hidden unit k iff ``rank[d] + 1 > m_L(k)`` (strictly greater).

So output d depends only on inputs of degree at most ``rank[d]``, i.e. on the dimensions that
come before d in the order. An optional direct input -> output layer (masked strictly lower
in the order) gives the network a FVSBN inside it. Changing the order (``set_order``) only
rebuilds the masks, which are buffers and so travel with the state dict.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .fvsbn import BinaryAR


@dataclass
class MADEConfig:
    dims: int  # D, number of binary dimensions
    hidden: tuple[int, ...] = (256,)  # sizes of the hidden layers
    direct: bool = True  # add a masked direct input -> output connection (a FVSBN)
    seed: int = 0  # draws the hidden degrees (the connectivity)
    order: list[int] | None = field(default=None)  # None: the natural order 0..D-1


class MaskedLinear(nn.Linear):
    """``nn.Linear`` whose weight is multiplied by a fixed 0/1 ``mask (out, in)`` on every call."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__(in_features, out_features, bias)
        self.register_buffer("mask", torch.ones(out_features, in_features))

    def set_mask(self, mask: torch.Tensor) -> None:
        self.mask.copy_(mask.to(self.mask))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


def hidden_degrees(
    sizes: tuple[int, ...], dims: int, generator: torch.Generator
) -> list[torch.Tensor]:
    """Degrees of the hidden units, layer by layer, drawn as in the MADE paper.

    Each unit of layer l gets a degree uniform in ``[min of layer l-1, D - 1]`` (at least 1),
    so no unit is useless: every one can reach some output.
    """
    degrees, low = [], 1
    top = max(dims - 1, 1)
    for h in sizes:
        m = torch.randint(low, top + 1, (h,), generator=generator)
        degrees.append(m)
        low = int(m.min())
    return degrees


def made_masks(rank: torch.Tensor, hidden: list[torch.Tensor]) -> list[torch.Tensor]:
    """The ``(out, in)`` masks of every layer, hidden ones first, the output layer last.

    ``rank (D,)``: step of each dimension in the order; ``hidden``: degrees of each hidden layer.
    """
    degrees_in = rank + 1
    masks = []
    for m in hidden:
        masks.append((m[:, None] >= degrees_in[None, :]).float())
        degrees_in = m
    masks.append(((rank + 1)[:, None] > degrees_in[None, :]).float())
    return masks


class MADE(BinaryAR):
    """Masked MLP for ``x (B, D)`` in {0, 1}; ``forward`` gives all D conditional logits at once."""

    def __init__(self, config: MADEConfig):
        super().__init__(config.dims, config.order)
        self.config = config
        sizes = (config.dims, *config.hidden)
        self.hidden = nn.ModuleList(MaskedLinear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.out = MaskedLinear(sizes[-1], config.dims)
        self.direct = MaskedLinear(config.dims, config.dims, bias=False) if config.direct else None
        if self.direct is not None:
            nn.init.zeros_(self.direct.weight)  # start as a MADE; the data decides how much FVSBN
        self._degrees = hidden_degrees(
            tuple(config.hidden), config.dims, torch.Generator().manual_seed(config.seed)
        )
        self._update_masks()

    def _update_masks(self) -> None:
        rank = self.rank.cpu()
        masks = made_masks(rank, self._degrees)
        for layer, mask in zip([*self.hidden, self.out], masks):
            layer.set_mask(mask)
        if self.direct is not None:
            self.direct.set_mask((rank[:, None] > rank[None, :]).float())

    def set_order(self, order: torch.Tensor | list[int]) -> None:
        """Use another order: the masks are rebuilt (the weights stay; retrain or fine-tune)."""
        self._set_order_buffers(order)
        self._update_masks()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, D)`` of ``p(x_d = 1 | x before d)`` for ``x (B, D)`` (long, or float for
        probes)."""
        x = x.to(self.out.weight.dtype)
        h = x
        for layer in self.hidden:
            h = F.relu(layer(h))
        logits = self.out(h)
        if self.direct is not None:
            logits = logits + self.direct(x)
        return logits

    def num_free_parameters(self) -> int:
        """Weights the masks let through plus biases: the parameters that actually matter."""
        layers = [*self.hidden, self.out] + ([self.direct] if self.direct is not None else [])
        total = 0
        for layer in layers:
            total += int(layer.mask.sum())
            total += layer.bias.numel() if layer.bias is not None else 0
        return total

    @torch.no_grad()
    def init_bias(self, data: torch.Tensor, eps: float = 1e-3) -> None:
        """Start each output bias at the logit of its pixel's mean in ``data (N, D)``."""
        p = data.float().mean(0).clamp(eps, 1 - eps).to(self.out.bias)
        self.out.bias.copy_(torch.logit(p))
