"""Input validation for every model, with one switch (like ``torch.distributions``).

Checks that read tensor *values* (a range check, say) make the CPU wait for the GPU, so a hot
loop should not run them on every step. Rather than each model growing a private bypass, the
checks here all obey one switch: :func:`set_validation` (global) or the :func:`validation`
context manager. :func:`arnb.train.train` validates the first batch and then trains with the
checks off. Conversions that the models need (``int32`` ids to ``long``) happen either way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

_enabled = True


def set_validation(enabled: bool) -> None:
    """Turn the value checks of every model on (the default) or off."""
    global _enabled
    _enabled = bool(enabled)


def validation_enabled() -> bool:
    return _enabled


@contextlib.contextmanager
def validation(enabled: bool) -> Iterator[None]:
    """Run a block with the value checks on or off, restoring the setting afterwards."""
    before = _enabled
    set_validation(enabled)
    try:
        yield
    finally:
        set_validation(before)


def _require_tensor(x, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")


def check_shape(x: torch.Tensor, shape: tuple[int, ...], name: str = "x") -> None:
    """Raise unless ``x`` is ``(batch, *shape)``; ``-1`` in ``shape`` matches any size."""
    _require_tensor(x, name)
    ok = x.dim() == len(shape) + 1 and all(s in (-1, t) for s, t in zip(shape, x.shape[1:]))
    if not ok:
        want = ", ".join("any" if s == -1 else str(s) for s in shape)
        raise ValueError(f"{name} must have shape (batch, {want}), got {tuple(x.shape)}")


def as_indices(
    x: torch.Tensor, num_classes: int, shape: tuple[int, ...] | None = None, name: str = "x"
) -> torch.Tensor:
    """``x`` as a ``long`` tensor of category indices in ``[0, num_classes)``.

    Any integer dtype is accepted and converted (``uint8`` images, ``int32`` ids); floats and
    booleans are refused. The value range is checked when validation is on. ``shape`` gives the
    expected trailing dimensions (without the batch dimension; ``-1`` matches any size).
    """
    _require_tensor(x, name)
    if x.dtype.is_floating_point or x.dtype == torch.bool or x.dtype.is_complex:
        raise TypeError(
            f"{name} must hold integer category indices (torch.long), got dtype {x.dtype}; "
            "convert with x.long() if the values are already whole numbers"
        )
    if shape is not None:
        check_shape(x, tuple(shape), name)
    if _enabled and x.numel():
        # Python ints: comparing a uint8 tensor with 256 would wrap the bound to 0.
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(
                f"{name} values must lie in [0, {num_classes - 1}], found range [{lo}, {hi}]"
            )
    return x.long()


def check_finite(x: torch.Tensor, name: str = "x", where: torch.Tensor | None = None) -> None:
    """Raise if ``x`` (restricted to ``where``, a boolean mask, if given) holds NaN or inf."""
    _require_tensor(x, name)
    if not _enabled:
        return
    vals = x if where is None else x[where.expand_as(x) if where.shape != x.shape else where]
    if vals.numel() and not bool(torch.isfinite(vals).all()):
        raise ValueError(f"{name} holds NaN or infinite values")


def check_positive(x: torch.Tensor, name: str) -> None:
    """Raise unless every entry of ``x`` is a finite number > 0 (scales, concentrations)."""
    _require_tensor(x, name)
    if _enabled and x.numel() and not bool(((x > 0) & torch.isfinite(x)).all()):
        raise ValueError(f"{name} must be finite and > 0, found min {float(x.min()):.4g}")


def check_int(value, name: str, low: int | None = None, high: int | None = None) -> int:
    """An integer argument (``n``, ``length``, ``top_k``) in ``[low, high]``, as a Python int."""
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, torch.Tensor) and value.dim() == 0 and not value.is_floating_point():
            value = int(value)
        else:
            raise TypeError(f"{name} must be an int, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
        raise ValueError(f"{name} must lie in {bounds}, got {value}")
    return value
