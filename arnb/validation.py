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


def _check_dims(x: torch.Tensor, shape: tuple, name: str, batch: bool) -> None:
    """``x.shape`` must equal ``shape`` (``None``: any size; the first is "batch" if ``batch``)."""
    if x.dim() == len(shape) and all(s is None or s == t for s, t in zip(shape, x.shape)):
        return
    free = ["batch", "any"] if batch else ["B", "B"]  # what a None stands for, first and rest
    sizes = [str(s) if s is not None else free[min(i, 1)] for i, s in enumerate(shape)]
    raise ValueError(f"{name} must have shape ({', '.join(sizes)}), got {tuple(x.shape)}")


def check_shape(x: torch.Tensor, shape: tuple[int | None, ...], name: str = "x") -> None:
    """Raise unless ``x`` is ``(batch, *shape)``; ``None`` in ``shape`` matches any size."""
    _require_tensor(x, name)
    _check_dims(x, (None, *shape), name, batch=True)


def as_indices(
    x: torch.Tensor, num_classes: int, shape: tuple[int, ...] | None = None, name: str = "x"
) -> torch.Tensor:
    """``x`` as a ``long`` tensor of category indices in ``[0, num_classes)``.

    Any integer dtype is accepted and converted (``uint8`` images, ``int32`` ids); floats and
    booleans are refused. The value range is checked when validation is on. ``shape`` gives the
    expected trailing dimensions (without the batch dimension; ``None`` matches any size).
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


def check_finite(x: torch.Tensor, name: str = "x") -> None:
    """Raise if ``x`` holds NaN or inf (when validation is on)."""
    _require_tensor(x, name)
    if _enabled and x.numel() and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name} holds NaN or infinite values ({bad}); clean the data first")


def check_real(x: torch.Tensor, name: str = "x", shape: tuple[int | None, ...] | None = None):
    """Raise unless ``x`` is a finite floating-point tensor of ``shape`` (``None``: any size)."""
    _require_tensor(x, name)
    if not x.dtype.is_floating_point:
        raise TypeError(
            f"{name} must be a floating-point tensor, got dtype {x.dtype}; use {name}.float()"
        )
    if shape is not None:
        _check_dims(x, tuple(shape), name, batch=False)
    check_finite(x, name)


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
