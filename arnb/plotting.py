"""Figures the chapters share: image grids, loss curves, saving for recipes."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from torchvision.utils import make_grid

from .train import History


def image_grid(
    images: torch.Tensor,
    nrow: int | None = None,
    vmax: float | None = None,
    ax=None,
    title: str | None = None,
    pad: int = 1,
):
    """Draw ``images (N, C, H, W)`` (C = 1 or 3; ints or floats) as one grid; return the axes.

    ``nrow`` is the number of images per row (default: a square grid, ``ceil(sqrt(N))``,
    which fills a square panel). Pixel values are scaled by ``vmax`` (default: 1 for binary
    images, 255 for 8-bit ones).
    """
    images = torch.as_tensor(images).detach().cpu().float()
    if images.dim() == 3:
        images = images.unsqueeze(1)
    n, c = images.shape[:2]
    if vmax is None:
        vmax = 1.0 if images.max() <= 1 else 255.0
    ncol = min(nrow, n) if nrow is not None else math.ceil(math.sqrt(n))
    nrows = (n + ncol - 1) // ncol
    # white gaps between the images and around them; make_grid gives 3 channels even for C = 1
    grid = make_grid((images / vmax).clamp(0, 1), nrow=ncol, padding=pad, pad_value=1.0)
    grid = grid.permute(1, 2, 0).numpy()
    if ax is None:
        _, ax = plt.subplots(figsize=(ncol * 0.6 + 0.5, nrows * 0.6 + 0.5))
    ax.imshow(
        grid[..., 0] if c == 1 else grid,
        cmap="gray" if c == 1 else None,
        vmin=0,
        vmax=1,
        interpolation="nearest",
    )
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def plot_history(
    history: History,
    eval_key: str | None = None,
    ax=None,
    label: str = "",
    ylabel: str = "loss (nats)",
):
    """Training loss per step and, if given, one evaluation metric; return the axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(history.step, history.train, alpha=0.6, label=f"{label} train".strip())
    if eval_key and history.eval:
        ax.plot(
            history.eval_step,
            [e[eval_key] for e in history.eval],
            "o-",
            label=f"{label} {eval_key.replace('_', ' ')}".strip(),
        )
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.legend()
    ax.grid(alpha=0.3)
    return ax


def save_figure(fig, out_dir: str | Path, name: str) -> Path:
    """Save ``fig`` as ``out_dir/name.png`` (150 dpi) and return the path."""
    out = Path(out_dir) / f"{name}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150, bbox_inches="tight")
    return out


def draw_strokes(seq, ax=None, color: str = "k", lw: float = 1.5):
    """Draw one stroke-3 sequence ``(L, 3)`` of ``(dx, dy, pen_lifted)``; return the axes.

    Positions are cumulative sums of the moves; the pen leaves the paper after a point whose
    third value is 1. The y axis points down, as in the data.
    """
    seq = np.asarray(torch.as_tensor(seq).detach().cpu(), dtype=np.float64)
    if ax is None:
        _, ax = plt.subplots(figsize=(2, 2))
    xy = seq[:, :2].cumsum(0)
    start = 0
    for i in range(len(seq)):
        if seq[i, 2] >= 0.5 or i == len(seq) - 1:
            ax.plot(xy[start : i + 1, 0], -xy[start : i + 1, 1], "-", color=color, lw=lw)
            start = i + 1
    ax.set_aspect("equal")
    ax.set_axis_off()
    return ax
