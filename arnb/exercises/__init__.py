"""Self-checks for the book's exercises, one module per chapter (``arnb.exercises.ch01`` ...).

Every ``check_*`` function runs the reader's function on cases with known answers, prints what
is right or wrong and returns True when everything is right. It never raises on a wrong answer
(the reader's own exception is caught and reported), only on an answer that is not a function,
so a notebook cell keeps going.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def require_callable(fn, example: str) -> None:
    """Refuse an answer that is not a function (the one error a checker raises)."""
    if not callable(fn):
        raise TypeError(f"pass your function itself, e.g. {example}")


def report(name: str, problems: list[str], cases: int | None = None) -> bool:
    """Print ``name: correct`` or the list of problems; return whether there were none."""
    if problems:
        counted = f" ({len(problems)} of {cases} cases wrong)" if cases else ""
        print(f"{name}: not yet right{counted}")
        for p in problems[:8]:
            print(f"  - {p}")
        return False
    print(f"{name}: correct" + (f" ({cases} cases)" if cases else ""))
    return True


def call(fn: Callable, *args, tensor: bool = False):
    """Run the reader's ``fn(*args)``: ``(result, None)``, or ``(None, what went wrong)``.

    With ``tensor=True`` a result that is not a ``torch.Tensor`` counts as wrong too.
    """
    try:
        out = fn(*args)
    except Exception as e:  # the reader's code failed: say how, do not crash the notebook
        return None, f"raised {type(e).__name__}: {e}"
    if tensor and not isinstance(out, torch.Tensor):
        return None, f"returned a {type(out).__name__}, not a torch.Tensor"
    return out, None


def call_shaped(fn: Callable, *args, shape: tuple[int, ...]):
    """:func:`call`, then the result as a tensor of ``shape``: ``(tensor, None)`` or
    ``(None, what went wrong)``."""
    out, err = call(fn, *args)
    if err:
        return None, err
    out = torch.as_tensor(out)
    if out.shape != shape:
        return None, f"expected shape {tuple(shape)}, got {tuple(out.shape)}"
    return out, None
