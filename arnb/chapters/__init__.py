"""The chapters' library: the functions each notebook calls, and the recipes that regenerate the
book's headline figures without Jupyter.

A chapter registers a recipe in a module of this package::

    @recipe("pixelcnn-mnist8", "gated PixelCNN on 8-bit MNIST")
    def pixelcnn_mnist8(setup: Setup, out: Path) -> dict:
        ...  # train, evaluate, save figures under ``out``
        return {"test_bits_per_dim": 0.79, ...}

and ``python -m arnb run pixelcnn-mnist8 --profile gpu`` runs it, writing the returned metrics
(plus profile, device and wall time) to ``out/metrics.json``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..config import Setup


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    fn: Callable[[Setup, Path], dict]


RECIPES: dict[str, Recipe] = {}


def recipe(name: str, description: str):
    """Register ``fn(setup, out_dir) -> metrics`` under ``name``."""

    def register(fn):
        if name in RECIPES:
            raise ValueError(f"recipe {name!r} is registered twice")
        RECIPES[name] = Recipe(name, description, fn)
        return fn

    return register


def save_and_close(fig, out: Path, name: str) -> Path:
    """Save a recipe's figure as ``out/name.png`` and close it (a recipe keeps no figure open)."""
    import matplotlib.pyplot as plt

    from ..plotting import save_figure

    try:
        return save_figure(fig, out, name)
    finally:
        plt.close(fig)


@contextmanager
def new_figure(out: Path, name: str, *grid: int, **subplots) -> Iterator:
    """``(fig, axes)`` of ``plt.subplots(*grid, **subplots)``, saved as ``out/name.png`` and
    closed when the ``with`` block ends (closed only, if the block raises)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(*grid, **subplots)
    try:
        yield fig, axes
    except BaseException:
        plt.close(fig)
        raise
    save_and_close(fig, out, name)


def load_all() -> dict[str, Recipe]:
    """Import every recipe module of this package, so that all recipes are registered."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    return RECIPES
