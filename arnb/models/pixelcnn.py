"""PixelCNN and gated PixelCNN: images as autoregressive sequences of pixels.

An image ``x (C, H, W)`` is read in **raster order**, row by row, left to right, and inside one
pixel channel by channel (R, then G, then B)::

    p(x) = prod_{i, j} prod_c p(x[c, i, j] | all earlier pixels, channels < c of pixel (i, j))

All conditionals come out of one pass of a convolutional network whose kernels are *masked* so
that no output sees its own input or anything after it (van den Oord et al. 2016):

- :class:`MaskedConv2d` is an ordinary convolution whose weight is multiplied by a fixed 0/1
  mask. Type **A** (first layer) excludes the centre pixel, type **B** (later layers) includes
  it; with ``groups=3`` the channels are split into R/G/B groups (channel ``k`` belongs to group
  ``k % 3``), and at the centre pixel group ``g`` may see groups ``< g`` (A) or ``<= g`` (B).
- :class:`PixelCNN` stacks masked 3x3 convolutions. Its receptive field has a **blind spot**
  above and to the right of each pixel (shown with gradients in the notebook and the tests).
- :class:`GatedPixelCNN` (van den Oord et al. 2016, "Conditional image generation") splits the
  network into a *vertical* stack that sees the rows above and a *horizontal* stack that sees
  the pixels to the left in the current row; the vertical stack feeds the horizontal one, which
  removes the blind spot. Layers use gated units ``tanh(a) * sigmoid(b)`` and can be conditioned
  on a class label (an embedding added to every gated layer).

Two output heads: ``num_classes=2`` gives a **Bernoulli** head (one logit per pixel and channel)
for binarized images, any other ``num_classes`` a categorical head (e.g. 256 intensities).

Sampling is ancestral: H*W*C draws, each through :func:`arnb.sampling.sample_bernoulli` or
:func:`arnb.sampling.sample_categorical` (one uniform number per image and step). The naive loop
runs the whole network for every draw; :meth:`GatedPixelCNN.sample` with ``method="fast"`` computes
only what the next pixel needs (the vertical stack once per row on the rows it can see, the
horizontal stack on the few pixels to the left) and so draws the same samples for the same seed.
:meth:`GatedPixelCNN.sample_cached` keeps every layer's computed features instead (Ramachandran
et al. 2017): one new row of the vertical stack per image row, one new column of the horizontal
stack per pixel, and on CUDA the per-row work replayed as one CUDA graph; same samples again.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..protocol import ARModule, fixed_length
from ..sampling import sample_bernoulli, sample_categorical
from ..train import evaluating, exact_float32
from ..validation import as_indices


def _sampler(method):
    """Run a sampling method in evaluation mode without gradients (dropout off: every sampler
    draws the same images whatever mode the model was left in) and in float32 without TF32
    (:func:`arnb.train.exact_float32`); mode and flags are restored after."""

    @functools.wraps(method)
    def wrapped(self, *args, **kwargs):
        with evaluating(self), exact_float32():
            return method(self, *args, **kwargs)

    return wrapped


# ----------------------------------------------------------------------------------------------
# masks


def channel_group(channels: int, groups: int) -> torch.Tensor:
    """Colour group of each of ``channels`` feature maps: ``k % groups`` -> ``(channels,)`` long.

    Interleaving (rather than contiguous blocks) keeps the groups aligned when a layer's
    ``2C`` outputs are split into the two halves of a gated unit.
    """
    if channels % groups:
        raise ValueError(f"channels ({channels}) must be divisible by the colour groups ({groups})")
    return torch.arange(channels) % groups


def centre_channel_mask(
    in_channels: int, out_channels: int, mask_type: str, groups: int = 1
) -> torch.Tensor:
    """``(out, in)`` 0/1 mask of what output channels may see *at the centre pixel*.

    Output group g sees input groups < g (type A) or <= g (type B). With ``groups=1``: type A
    sees nothing (the pixel's own value), type B sees everything (earlier *features* of it).
    """
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
    gin = channel_group(in_channels, groups).unsqueeze(0)
    gout = channel_group(out_channels, groups).unsqueeze(1)
    allowed = gin < gout if mask_type == "A" else gin <= gout
    return allowed.float()


def causal_mask(
    in_channels: int,
    out_channels: int,
    kernel_size: int | tuple[int, int],
    mask_type: str,
    groups: int = 1,
) -> torch.Tensor:
    """Raster-order mask ``(out, in, kh, kw)`` for a kernel centred on the current pixel.

    Rows above the centre: all ones. Centre row: ones left of the centre. Centre pixel: the
    channel rule of :func:`centre_channel_mask`. Everything after: zeros.
    """
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"kernel sizes must be odd so that a centre exists, got {(kh, kw)}")
    mask = torch.zeros(out_channels, in_channels, kh, kw)
    ci, cj = kh // 2, kw // 2
    mask[:, :, :ci, :] = 1
    mask[:, :, ci, :cj] = 1
    mask[:, :, ci, cj] = centre_channel_mask(in_channels, out_channels, mask_type, groups)
    return mask


def vertical_mask(
    in_channels: int, out_channels: int, kernel_size: int, first: bool
) -> torch.Tensor:
    """Mask of the gated PixelCNN's vertical stack: rows above the centre, and the centre row
    itself except in the first layer. The first layer sees only rows strictly above, so every
    vertical feature at row i depends on rows < i: no channel rule is needed.
    """
    mask = torch.zeros(out_channels, in_channels, kernel_size, kernel_size)
    mask[:, :, : kernel_size // 2 + (0 if first else 1), :] = 1
    return mask


class MaskedConv2d(nn.Conv2d):
    """A ``Conv2d`` whose weight is multiplied by a fixed 0/1 ``mask (out, in, kh, kw)``.

    "Same" padding (scaled by the dilation) keeps the image size. The masked weights still exist
    but receive zero gradient and never influence the output.

    A speed-up that changes nothing in the arithmetic's result: kernel rows and columns that the
    mask zeroes out entirely (e.g. the lower half of a vertical-stack kernel) are cut off before
    the convolution and the input is padded asymmetrically instead, so no multiply is spent on
    them. A 3x3 vertical kernel costs 6 taps instead of 9, a 7x7 first layer 21 instead of 49.
    """

    def __init__(self, in_channels: int, out_channels: int, mask: torch.Tensor, dilation: int = 1):
        kh, kw = mask.shape[-2:]
        super().__init__(in_channels, out_channels, (kh, kw), dilation=dilation, padding=0)
        if mask.shape != self.weight.shape:
            raise ValueError(
                f"mask shape {tuple(mask.shape)} != weight shape {tuple(self.weight.shape)}"
            )
        self.register_buffer("mask", mask.clone(), persistent=False)
        used = mask.sum((0, 1)) > 0
        rows, cols = used.any(1).nonzero().flatten(), used.any(0).nonzero().flatten()
        if len(rows) == 0:
            raise ValueError("the mask hides every weight")
        r0, r1, c0, c1 = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
        self.crop = (r0, r1 + 1, c0, c1 + 1)
        d = dilation
        # (left, right, top, bottom); a negative pad drops input rows no kept weight can reach
        self.pad = (d * (kw // 2 - c0), d * (c1 - kw // 2), d * (kh // 2 - r0), d * (r1 - kh // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r0, r1, c0, c1 = self.crop
        weight = (self.weight * self.mask)[:, :, r0:r1, c0:c1]
        if any(self.pad):  # 1x1 kernels need no padding
            x = F.pad(x, self.pad)
        return F.conv2d(x, weight, self.bias, 1, 0, self.dilation)

    def effective_parameters(self) -> int:
        """Weights that the mask lets through, plus the bias."""
        return int(self.mask.sum()) + (self.bias.numel() if self.bias is not None else 0)


def masked_conv(
    in_channels: int,
    out_channels: int,
    kernel_size: int | tuple[int, int],
    mask_type: str,
    groups: int = 1,
    dilation: int = 1,
) -> MaskedConv2d:
    """A raster-order masked convolution (type ``"A"`` or ``"B"``) with colour ``groups``."""
    mask = causal_mask(in_channels, out_channels, kernel_size, mask_type, groups)
    return MaskedConv2d(in_channels, out_channels, mask, dilation)


# ----------------------------------------------------------------------------------------------
# configuration and the shared protocol


@dataclass
class PixelCNNConfig:
    """Sizes of a (gated) PixelCNN.

    ``num_classes`` is the number of values per channel: 2 gives a Bernoulli head, 256 an
    8-bit categorical head. ``hidden`` channels must be divisible by ``channels`` (the colour
    groups). ``dilations`` (one per hidden layer, default all 1) widen the receptive field.
    """

    channels: int = 1
    height: int = 28
    width: int = 28
    num_classes: int = 256
    hidden: int = 64
    layers: int = 6
    kernel: int = 3
    first_kernel: int = 7
    dilations: tuple[int, ...] = field(default_factory=tuple)
    num_labels: int = 0  # > 0: class-conditional, a label embedding added to every layer
    dropout: float = 0.0  # on each layer's residual update, while training only

    def __post_init__(self):
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")
        if self.channels < 1 or self.height < 1 or self.width < 1:
            raise ValueError("channels, height and width must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.kernel % 2 == 0 or self.first_kernel % 2 == 0:
            raise ValueError("kernel sizes must be odd")
        if self.hidden % self.channels:
            raise ValueError(
                f"hidden ({self.hidden}) must be divisible by channels ({self.channels})"
            )
        self.dilations = tuple(self.dilations) or (1,) * self.layers
        if len(self.dilations) != self.layers:
            raise ValueError(f"need one dilation per layer ({self.layers}), got {self.dilations}")

    @property
    def bernoulli(self) -> bool:
        return self.num_classes == 2

    @property
    def dims(self) -> int:
        return self.channels * self.height * self.width

    @property
    def reach(self) -> int:
        """How many rows up (and columns left/right) the receptive field of a pixel reaches."""
        return self.first_kernel // 2 + sum((self.kernel // 2) * d for d in self.dilations)


class _PixelCNNBase(ARModule):
    """Input checks, heads, ``log_prob`` and the naive sampling loop shared by both models.

    Subclasses implement ``logits_from_float(h, label) -> (B, K', C, H, W)`` with ``K' = 1``
    (Bernoulli) or ``K = num_classes``; ``h (B, C, H, W)`` is the image scaled to [-1, 1].
    """

    def __init__(self, config: PixelCNNConfig):
        super().__init__()
        self.config = config
        cfg = config
        self.out_per_channel = 1 if cfg.bernoulli else cfg.num_classes
        self.embed = None
        if cfg.num_labels:
            # One embedding per layer, for the 2C pre-activations of its gated / residual unit.
            self.embed = nn.ModuleList(
                nn.Embedding(cfg.num_labels, 2 * cfg.hidden) for _ in range(cfg.layers)
            )

    # -- input handling --------------------------------------------------------------------------

    def check_images(self, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        """``x (B, C, H, W)`` of any integer dtype (uint8 images too) as ``long``.

        Clear errors for float images, wrong shapes or channel counts and (while
        :mod:`arnb.validation` is on) values out of range.
        """
        cfg = self.config
        if isinstance(x, torch.Tensor) and x.dim() == 4 and x.shape[1] != cfg.channels:
            raise ValueError(f"{name} has {x.shape[1]} channels, the model expects {cfg.channels}")
        return as_indices(x, cfg.num_classes, (cfg.channels, cfg.height, cfg.width), name)

    def check_labels(self, label, n: int, device) -> torch.Tensor | None:
        """``label``: None, an int, or ``(n,)`` ints in ``[0, num_labels)`` -> ``(n,)`` long or
        None."""
        cfg = self.config
        if not cfg.num_labels:
            if label is not None:
                raise ValueError(
                    "this model is not class-conditional (num_labels=0); do not pass a label"
                )
            return None
        if label is None:
            raise ValueError(
                f"this model is class-conditional: pass label (ints in [0, {cfg.num_labels - 1}])"
            )
        label = torch.as_tensor(label, device=device)
        if label.dim() == 0:
            label = label.expand(n)
        if label.shape != (n,):
            raise ValueError(f"label must be an int or have shape ({n},), got {tuple(label.shape)}")
        return as_indices(label, cfg.num_labels, name="label")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Integer pixels ``{0..K-1}`` -> floats in [-1, 1] (what the network reads)."""
        dtype = self.head.out.weight.dtype  # float32 normally; float64 in the exactness tests
        return x.to(dtype) * (2.0 / (self.config.num_classes - 1)) - 1.0

    def conditioning(self, label: torch.Tensor | None) -> list[torch.Tensor | None]:
        """Per layer: ``(B, 2C, 1, 1)`` label embedding to add, or None."""
        if self.embed is None or label is None:
            return [None] * self.config.layers
        return [e(label)[:, :, None, None] for e in self.embed]

    # -- the protocol ----------------------------------------------------------------------------

    def logits_from_float(self, h: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, *, label=None) -> torch.Tensor:
        """Parameters of every conditional: ``x (B, C, H, W)`` integers -> logits.

        Bernoulli head: ``(B, C, H, W)`` (one logit of P(x=1) each); categorical head:
        ``(B, C, H, W, K)``.
        """
        x = self.check_images(x)
        raw = self.logits_from_float(self.encode(x), self.check_labels(label, x.shape[0], x.device))
        return raw[:, 0] if self.config.bernoulli else raw.movedim(1, -1)

    def log_prob(self, x: torch.Tensor, *, label=None) -> torch.Tensor:
        """``log p(x)`` in nats: ``x (B, C, H, W)`` integers (uint8 images too) -> ``(B,)``.

        ``label`` (an int or ``(B,)``) conditions a class-conditional model.
        """
        x = self.check_images(x)
        label = self.check_labels(label, x.shape[0], x.device)
        raw = self.logits_from_float(self.encode(x), label)
        if raw.dtype in (torch.float16, torch.bfloat16):
            raw = raw.float()  # the loss in full precision, also under autocast
        if self.config.bernoulli:
            nll = F.binary_cross_entropy_with_logits(raw[:, 0], x.to(raw.dtype), reduction="none")
        else:
            nll = F.cross_entropy(raw, x, reduction="none")  # class dimension 1: no copy
        return -nll.flatten(1).sum(1)

    # -- sampling --------------------------------------------------------------------------------

    def _start(
        self, n: int, prompt, label, length: int | None
    ) -> tuple[torch.Tensor, int, torch.Tensor | None]:
        """Blank canvas ``(n, C, H, W)`` with the prompt's rows filled in; first row to sample."""
        cfg = self.config
        fixed_length(length, cfg.dims, "image")
        x, rows = self.start_buffer(
            n, prompt, (cfg.channels, cfg.height, cfg.width), axis=1, num_classes=cfg.num_classes
        )
        return x, rows, self.check_labels(label, n, x.device)

    def _draw(self, logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """One draw per image from ``logits (n, K')``: Bernoulli or categorical, one uniform
        each."""
        if self.config.bernoulli:
            return sample_bernoulli(logits[:, 0], generator)
        return sample_categorical(logits, generator)

    @_sampler
    def sample_naive(
        self,
        n: int,
        *,
        prompt=None,
        generator: torch.Generator | None = None,
        length: int | None = None,
        label=None,
        progress: bool = False,
    ) -> torch.Tensor:
        """The textbook loop: one full forward pass per pixel and channel (H*W*C passes).

        Arguments as for :meth:`sample`. Returns ``(n, C, H, W)`` long.
        """
        cfg = self.config
        x, rows, label = self._start(n, prompt, label, length)
        steps = range(rows * cfg.width, cfg.height * cfg.width)
        if progress:
            from ..train import progress as bar  # a plain line when done: readable without JS

            steps = bar(steps, desc="naive sampling", unit="pixel")
        for p in steps:
            i, j = divmod(p, cfg.width)
            for c in range(cfg.channels):
                raw = self.logits_from_float(self.encode(x), label)
                x[:, c, i, j] = self._draw(raw[:, :, c, i, j], generator)
        return x

    def sample_fast(self, n: int, **kwargs) -> torch.Tensor:
        """The plain PixelCNN has no incremental sampler: the naive loop."""
        return self.sample_naive(n, **kwargs)

    def sample_cached(self, n: int, **kwargs) -> torch.Tensor:
        """The plain PixelCNN has no cached sampler: the naive loop (``cuda_graph`` ignored)."""
        kwargs.pop("cuda_graph", None)
        return self.sample_naive(n, **kwargs)

    def sample(
        self,
        n: int,
        *,
        prompt=None,
        generator: torch.Generator | None = None,
        length: int | None = None,
        label=None,
        progress: bool = False,
        method: str = "fast",
    ) -> torch.Tensor:
        """Ancestral samples ``(n, C, H, W)`` long.

        ``prompt (C, rows, W)`` or ``(n, C, rows, W)`` fixes the first rows (image completion);
        ``label`` (an int or ``(n,)``) conditions a class-conditional model; ``length`` may only
        be None or ``C*H*W``. ``method`` picks the sampler: ``"naive"`` (one full pass per value),
        ``"fast"`` (crops to the receptive field) or ``"cached"`` (keeps every layer's features);
        all three draw the same images for the same generator.
        """
        samplers = {
            "naive": self.sample_naive,
            "fast": self.sample_fast,
            "cached": self.sample_cached,
        }
        if method not in samplers:
            raise ValueError(f"method must be 'naive', 'fast' or 'cached', got {method!r}")
        draw = samplers[method]
        return draw(
            n, prompt=prompt, generator=generator, length=length, label=label, progress=progress
        )

    def effective_parameters(self) -> int:
        """Parameters that can influence the output (masked-out weights not counted)."""
        total = 0
        for m in self.modules():
            if isinstance(m, MaskedConv2d):
                total += m.effective_parameters()
            elif not any(True for _ in m.children()):
                total += sum(p.numel() for p in m.parameters(recurse=False))
        return total


class _OutputHead(nn.Module):
    """ELU, masked 1x1 (type B), ELU, masked 1x1 to ``K' * C`` logits -> ``(B, K', C, H, W)``."""

    def __init__(self, hidden: int, channels: int, out_per_channel: int):
        super().__init__()
        self.channels, self.k = channels, out_per_channel
        self.mid = masked_conv(hidden, hidden, 1, "B", channels)
        # Output channel k belongs to colour group k % C, so the (K', C) view below is right.
        self.out = masked_conv(hidden, out_per_channel * channels, 1, "B", channels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self.out(F.elu(self.mid(F.elu(h))))
        return h.view(h.shape[0], self.k, self.channels, h.shape[2], h.shape[3])


# ----------------------------------------------------------------------------------------------
# the plain PixelCNN


class PixelCNN(_PixelCNNBase):
    """Stacked masked convolutions (van den Oord et al. 2016, PixelCNN): a 7x7 type-A layer,
    then residual blocks ``x + tanh(a) * sigmoid(b)`` with ``[a, b] = conv3x3_B(elu(x))``, then
    the output head. Every kernel is a raster mask, so the model has a blind spot."""

    def __init__(self, config: PixelCNNConfig):
        super().__init__(config)
        cfg = config
        g = cfg.channels
        self.first = masked_conv(g, cfg.hidden, cfg.first_kernel, "A", g)
        # Each block computes 2C channels: a residual update and a gate (a plain sigmoid-gated
        # residual keeps training stable; the *masks* are what makes this the plain PixelCNN).
        self.blocks = nn.ModuleList(
            masked_conv(cfg.hidden, 2 * cfg.hidden, cfg.kernel, "B", g, d) for d in cfg.dilations
        )
        self.head = _OutputHead(cfg.hidden, g, self.out_per_channel)
        self.drop = nn.Dropout(cfg.dropout)

    def logits_from_float(self, h: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        """``h (B, C, H, W)`` in [-1, 1] -> logits ``(B, K', C, H, W)``."""
        x = self.first(h)
        for block, cond in zip(self.blocks, self.conditioning(label)):
            a = block(F.elu(x))
            if cond is not None:
                a = a + cond
            val, gate = a.chunk(2, dim=1)
            x = x + self.drop(torch.tanh(val) * torch.sigmoid(gate))
        return self.head(x)


# ----------------------------------------------------------------------------------------------
# the gated PixelCNN


class GatedLayer(nn.Module):
    """One gated layer: vertical stack ``v``, horizontal stack ``h``, both ``(B, C, H, W)``.

    The vertical convolution (k x k, rows above and the centre row) feeds the horizontal stack
    through a 1x1 convolution; the horizontal convolution (1 x k, pixels to the left and the
    centre under the type-B channel rule) adds its own view; each stack then applies
    ``tanh(a) * sigmoid(b)``. The horizontal stack is residual; ``dropout`` zeroes part of its
    update while training (a regularizer: an element-wise mask cannot break causality).
    """

    def __init__(self, hidden: int, groups: int, kernel: int, dilation: int, dropout: float = 0.0):
        super().__init__()
        self.v_conv = MaskedConv2d(
            hidden, 2 * hidden, vertical_mask(hidden, 2 * hidden, kernel, first=False), dilation
        )
        self.h_conv = masked_conv(hidden, 2 * hidden, (1, kernel), "B", groups, dilation)
        # Vertical features only ever see rows above, so mixing all their channels is causal.
        self.v_to_h = nn.Conv2d(2 * hidden, 2 * hidden, 1)
        self.h_out = masked_conv(hidden, hidden, 1, "B", groups)
        self.drop = nn.Dropout(dropout)

    def vertical(
        self, v: torch.Tensor, cond: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (new vertical features ``(B, C, H, W)``, pre-activation ``(B, 2C, H, W)`` for
        ``h``)."""
        pre = self.v_conv(v)
        if cond is not None:
            pre = pre + cond
        val, gate = pre.chunk(2, dim=1)
        return torch.tanh(val) * torch.sigmoid(gate), pre

    def horizontal(
        self, h: torch.Tensor, v_pre: torch.Tensor, cond: torch.Tensor | None
    ) -> torch.Tensor:
        pre = self.h_conv(h) + self.v_to_h(v_pre)
        if cond is not None:
            pre = pre + cond
        val, gate = pre.chunk(2, dim=1)
        return h + self.h_out(self.drop(torch.tanh(val) * torch.sigmoid(gate)))


class GatedPixelCNN(_PixelCNNBase):
    """Gated PixelCNN (van den Oord et al. 2016): vertical + horizontal stacks, no blind spot.

    The first layer is a type-A pair (vertical: rows strictly above; horizontal: pixels strictly
    to the left, plus earlier colour channels of the current pixel); then ``layers`` gated
    layers; the output head reads the horizontal stack.
    """

    def __init__(self, config: PixelCNNConfig):
        super().__init__(config)
        cfg = config
        g = cfg.channels
        k1 = cfg.first_kernel
        self.v_first = MaskedConv2d(g, cfg.hidden, vertical_mask(g, cfg.hidden, k1, first=True))
        self.h_first = masked_conv(g, cfg.hidden, (1, k1), "A", g)
        self.layers = nn.ModuleList(
            GatedLayer(cfg.hidden, g, cfg.kernel, d, cfg.dropout) for d in cfg.dilations
        )
        self.head = _OutputHead(cfg.hidden, g, self.out_per_channel)

    def vertical_stack(self, h: torch.Tensor, conds: list) -> list[torch.Tensor]:
        """``h (B, C, R, W)`` -> every layer's vertical pre-activation ``(B, 2C, R, W)``."""
        v = self.v_first(h)
        pres = []
        for layer, cond in zip(self.layers, conds):
            v, pre = layer.vertical(v, cond)
            pres.append(pre)
        return pres

    def horizontal_stack(
        self, h: torch.Tensor, v_pres: list[torch.Tensor], conds: list
    ) -> torch.Tensor:
        """``h (B, C, R, W')`` and the vertical pre-activations at the same pixels -> logits."""
        x = self.h_first(h)
        for layer, pre, cond in zip(self.layers, v_pres, conds):
            x = layer.horizontal(x, pre, cond)
        return self.head(x)

    def logits_from_float(self, h: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        """``h (B, C, H, W)`` in [-1, 1] -> logits ``(B, K', C, H, W)``."""
        conds = self.conditioning(label)
        return self.horizontal_stack(h, self.vertical_stack(h, conds), conds)

    @_sampler
    def sample_fast(
        self,
        n: int,
        *,
        prompt=None,
        generator: torch.Generator | None = None,
        length: int | None = None,
        label=None,
        progress: bool = False,
    ) -> torch.Tensor:
        """Same samples as :meth:`sample_naive` for the same generator, computing far less.

        A pixel's conditional depends on at most ``reach`` rows above it and ``reach`` pixels to
        its left in its own row (:attr:`PixelCNNConfig.reach`). So, once per row, the vertical
        stack runs on just the rows that row can see; then, for each pixel and channel, the
        horizontal stack and head run on the ``reach + 1`` pixels ending at that pixel. Features
        near the edge of such a crop are wrong (the convolution pads the crop with zeros), but
        the error travels at most one kernel reach per layer, so it never gets to the pixel
        being sampled. (Equality is exact in arithmetic; in floating point the crops may round
        differently in the last bit, which could flip a draw whose uniform lies within ~1e-7 of
        a boundary of the CDF. The tests check equality in float64.)
        """
        cfg = self.config
        r = cfg.reach
        x, rows, label = self._start(n, prompt, label, length)
        conds = self.conditioning(label)
        it = range(rows, cfg.height)
        if progress:
            from ..train import progress as bar  # a plain line when done: readable without JS

            it = bar(it, desc="fast sampling", unit="row")
        for i in it:
            top = max(0, i - r)
            v_pres = [
                pre[:, :, -1:]
                for pre in self.vertical_stack(self.encode(x[:, :, top : i + 1]), conds)
            ]
            for j in range(cfg.width):
                left = max(0, j - r)
                window = [pre[..., left : j + 1] for pre in v_pres]
                for c in range(cfg.channels):
                    raw = self.horizontal_stack(
                        self.encode(x[:, :, i : i + 1, left : j + 1]), window, conds
                    )
                    x[:, c, i, j] = self._draw(raw[:, :, c, 0, -1], generator)
        return x

    @_sampler
    def sample_cached(
        self,
        n: int,
        *,
        prompt=None,
        generator: torch.Generator | None = None,
        length: int | None = None,
        label=None,
        progress: bool = False,
        cuda_graph: bool | None = None,
    ) -> torch.Tensor:
        """Same samples as :meth:`sample_naive` for the same generator, each feature computed once.

        Every feature the network computes depends only on values drawn before it, so once
        computed it never changes (Ramachandran et al. 2017). The sampler keeps them: for each
        image row, the vertical stack computes one new row per layer from the kept rows above;
        for each pixel, the horizontal stack computes one new column per layer from the kept
        columns to its left, and the head reads it. (With colour channels the pixel's column is
        computed once per channel: its features see the channels drawn so far.) The uniforms are
        drawn per row from ``generator`` in the order the naive loop draws them.

        ``cuda_graph`` (None: when the model is on CUDA) records the work of one row (all its
        pixels) once as a CUDA graph and replays it for every row: a pixel costs a few dozen
        tiny kernels, and on a GPU their launches, not their arithmetic, set the pace.
        (Equality with the naive loop is exact in arithmetic; in floating point the sums are
        grouped differently, see :meth:`sample_fast`.)
        """
        cfg = self.config
        x, rows, label = self._start(n, prompt, label, length)
        if cuda_graph is None:
            cuda_graph = x.device.type == "cuda"
        if cuda_graph and x.device.type != "cuda":
            raise ValueError(f"cuda_graph=True needs the model on a CUDA device, not {x.device}")
        cache = _FeatureCache(self, x, label)
        it = range(cfg.height)
        if progress:
            from ..train import progress as bar  # a plain line when done: readable without JS

            it = bar(it, desc="cached sampling", unit="row")
        graph = None
        for i in it:
            cache.vertical_row(i)  # row i's vertical features need only rows < i
            if i < rows:
                continue  # a prompt row: nothing to draw, its pixels are already in the cache
            # the naive loop's draws for this row, in its order: (pixel, channel, image)
            u = torch.rand(cfg.width, cfg.channels, n, generator=generator)
            cache.uniforms.copy_(u)
            cache.start_row()
            if not cuda_graph:
                cache.row()
            elif graph is None:  # first row: run it once eagerly (warm-up), then record it
                side = torch.cuda.Stream(x.device)
                side.wait_stream(torch.cuda.current_stream(x.device))
                with torch.cuda.stream(side):
                    cache.row()
                torch.cuda.current_stream(x.device).wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    cache.row()
            else:
                graph.replay()
            cache.finish_row(i)
        return cache.x


class _FeatureCache:
    """The features :meth:`GatedPixelCNN.sample_cached` keeps, and the steps that extend them.

    - ``xv (n, C, P+H, W)``: the encoded image, ``P`` zero rows on top (the convolutions' zero
      padding); ``v[l] (n, hidden, P+H, W)``: the vertical stack's input of layer ``l``, the
      same way. A new image row adds one row to each.
    - ``vh[l] (n, W, 2*hidden)``: what the vertical stack (through ``v_to_h``), the biases and
      the label add to layer ``l``'s horizontal pre-activation, for the current row.
    - ``xh (n, P+W, C)`` and ``h[l] (n, P+W, hidden)``: the current row of the encoded image
      and of the horizontal stack's input of layer ``l`` (``h[L]`` feeds the head), ``P``
      zero columns on the left, channels last so that a window of pixels is one matrix row.

    The horizontal convolutions only look left, so they become matrix products of a window of
    kept columns with the kernel flattened to ``(taps * in, out)``. Every tensor the per-row
    step reads or writes stays in place (no reallocation), so that the step can be recorded as
    a CUDA graph and replayed.
    """

    def __init__(self, model: GatedPixelCNN, x: torch.Tensor, label: torch.Tensor | None):
        cfg = model.config
        self.model, self.cfg, self.x = model, cfg, x
        n, C, H, W = x.shape
        dtype, dev = model.head.out.weight.dtype, x.device
        convs = [model.h_first] + [layer.h_conv for layer in model.layers]
        convs += [model.v_first] + [layer.v_conv for layer in model.layers]
        # how far any kernel reaches up or left: the zero padding kept in front
        self.P = P = max(max(m.pad[0], m.pad[2]) for m in convs)
        hid = cfg.hidden
        self.conds = model.conditioning(label)
        self.xv = torch.zeros(n, C, P + H, W, dtype=dtype, device=dev)
        self.xv[:, :, P:] = model.encode(x)
        self.v = [torch.zeros(n, hid, P + H, W, dtype=dtype, device=dev) for _ in model.layers]
        self.vh = [torch.zeros(n, W, 2 * hid, dtype=dtype, device=dev) for _ in model.layers]
        self.xh = torch.zeros(n, P + W, C, dtype=dtype, device=dev)
        self.h = [
            torch.zeros(n, P + W, hid, dtype=dtype, device=dev) for _ in range(cfg.layers + 1)
        ]
        self.uniforms = torch.zeros(W, C, n, dtype=torch.get_default_dtype(), device=dev)
        self.drawn = torch.zeros(n, C, W, dtype=torch.long, device=dev)
        # the weights as the convolutions use them (masked, cropped), once
        self.h_first = self._flat(model.h_first)
        self.h_convs = [self._flat(layer.h_conv) for layer in model.layers]
        self.v_to_h = [(la.v_to_h.weight[:, :, 0, 0].t(), la.v_to_h.bias) for la in model.layers]
        self.h_outs = [self._pointwise(layer.h_out) for layer in model.layers]
        self.mid, self.out = self._pointwise(model.head.mid), self._pointwise(model.head.out)

    @staticmethod
    def _flat(m: MaskedConv2d) -> tuple[torch.Tensor, torch.Tensor, int, int, int]:
        """A ``1 x k`` masked convolution as ``(weight (taps*in, out), bias, first, last, step)``:
        output column ``j`` reads input columns ``j+first, j+first+step, ..., j+last``."""
        r0, r1, c0, c1 = m.crop
        kw, d = m.weight.shape[-1], m.dilation[1]
        w = (m.weight * m.mask)[:, :, r0, c0:c1]  # (out, in, taps)
        w = w.permute(2, 1, 0).reshape(-1, w.shape[0])
        return w, m.bias, d * (c0 - kw // 2), d * (c1 - 1 - kw // 2), d

    @staticmethod
    def _pointwise(m: MaskedConv2d) -> tuple[torch.Tensor, torch.Tensor]:
        return (m.weight * m.mask)[:, :, 0, 0].t(), m.bias

    def _window(self, buf: torch.Tensor, j: int, conv) -> torch.Tensor:
        """Columns of ``buf (n, P+W, ch)`` that output column ``j`` reads -> ``(n, taps*ch)``."""
        _, _, first, last, step = conv
        return buf[:, self.P + j + first : self.P + j + last + 1 : step].flatten(1)

    def _vertical_conv(self, m: MaskedConv2d, buf: torch.Tensor, i: int) -> torch.Tensor:
        """Row ``i`` of the masked convolution ``m`` of ``buf (n, ch, P+H, W)`` ->
        ``(n, out, 1, W)``."""
        r0, r1, c0, c1 = m.crop
        kh, kw = m.weight.shape[-2:]
        d = m.dilation[0]
        top = self.P + i + d * (r0 - kh // 2)
        rows = buf[:, :, top : top + d * (r1 - 1 - r0) + 1]
        weight = (m.weight * m.mask)[:, :, r0:r1, c0:c1]
        return F.conv2d(F.pad(rows, (*m.pad[:2], 0, 0)), weight, m.bias, 1, 0, m.dilation)

    def vertical_row(self, i: int) -> None:
        """Row ``i`` of every layer's vertical stack, from the kept rows above (eager)."""
        model, P = self.model, self.P
        v = self._vertical_conv(model.v_first, self.xv, i)
        for li, (layer, cond) in enumerate(zip(model.layers, self.conds)):
            self.v[li][:, :, P + i] = v[:, :, 0]
            pre = self._vertical_conv(layer.v_conv, self.v[li], i)
            if cond is not None:
                pre = pre + cond
            val, gate = pre.chunk(2, dim=1)
            v = torch.tanh(val) * torch.sigmoid(gate)
            w, b = self.v_to_h[li]
            add = torch.addmm(b, pre[:, :, 0].transpose(1, 2).flatten(0, 1), w)
            add = add.view(self.vh[li].shape) + self.h_convs[li][1]
            self.vh[li].copy_(add if cond is None else add + cond[:, :, 0, 0].unsqueeze(1))

    def start_row(self) -> None:
        """Blank the current row: encoded zeros (-1) as in the naive loop's canvas."""
        self.xh[:, self.P :].fill_(-1.0)

    def row(self) -> None:
        """Draw every pixel and channel of the current row (in place; a CUDA graph's body)."""
        cfg, model, P = self.cfg, self.model, self.P
        scale = 2.0 / (cfg.num_classes - 1)
        for j in range(cfg.width):
            col = P + j
            for c in range(cfg.channels):
                w, b = self.h_first[:2]
                self.h[0][:, col] = torch.addmm(b, self._window(self.xh, j, self.h_first), w)
                for li in range(cfg.layers):
                    w = self.h_convs[li][0]
                    pre = torch.addmm(
                        self.vh[li][:, j], self._window(self.h[li], j, self.h_convs[li]), w
                    )
                    val, gate = pre.chunk(2, dim=1)
                    w, b = self.h_outs[li]
                    gated = torch.tanh(val) * torch.sigmoid(gate)
                    torch.add(
                        self.h[li][:, col], torch.addmm(b, gated, w), out=self.h[li + 1][:, col]
                    )
                a = torch.addmm(self.mid[1], F.elu(self.h[-1][:, col]), self.mid[0])
                logits = torch.addmm(self.out[1], F.elu(a), self.out[0])
                logits = logits.view(-1, model.out_per_channel, cfg.channels)[:, :, c]
                u = self.uniforms[j, c]
                if cfg.bernoulli:  # as arnb.sampling.sample_bernoulli, with the given uniform
                    value = (u < torch.sigmoid(logits[:, 0].float())).long()
                else:
                    value = sample_categorical(logits, uniform=u)
                self.drawn[:, c, j] = value
                self.xh[:, col, c] = value.to(self.xh.dtype) * scale - 1.0

    def finish_row(self, i: int) -> None:
        """Write the drawn row into the image and into the vertical stack's input."""
        self.x[:, :, i] = self.drawn
        self.xv[:, :, self.P + i] = self.model.encode(self.drawn)


def raster_order(channels: int, height: int, width: int) -> torch.Tensor:
    """Position in the autoregressive order of each entry of a flattened ``(C, H, W)`` image.

    ``order[c*H*W + i*W + j] = (i*W + j)*C + c``: pixels row by row, channels inside a pixel.
    """
    c, i, j = torch.meshgrid(
        torch.arange(channels), torch.arange(height), torch.arange(width), indexing="ij"
    )
    return ((i * width + j) * channels + c).flatten()


def receptive_field(model: _PixelCNNBase, i: int, j: int, c: int = 0, label=None) -> torch.Tensor:
    """Which inputs the conditional of ``x[c, i, j]`` depends on, by gradients: ``(C, H, W)`` bool.

    The input is a fixed random image in [-1, 1] (so that no unit happens to sit at zero) and
    the output's logits are mixed by fixed random weights (so that no dependence cancels).
    """
    cfg = model.config
    g = torch.Generator().manual_seed(0)
    dtype = model.head.out.weight.dtype
    h = torch.rand(1, cfg.channels, cfg.height, cfg.width, generator=g, dtype=torch.float64) * 2 - 1
    h = h.to(model.device, dtype).requires_grad_(True)
    if label is not None:
        label = torch.as_tensor(label, device=model.device).reshape(1)
    raw = model.logits_from_float(h, label)
    weights = torch.randn(raw.shape[1], generator=g, dtype=torch.float64).to(raw)
    (grad,) = torch.autograd.grad((raw[0, :, c, i, j] * weights).sum(), h)
    return grad[0] != 0
