"""Self-checks for the book's exercises, one module per chapter (``arnb.exercises.ch01`` ...).

Every ``check_*`` function runs the reader's function on cases with known answers, prints what
is right or wrong and returns True when everything is right. It never raises on a wrong answer
(the reader's own exception is caught and reported), only on an answer that is not a function,
so a notebook cell keeps going.

Every checker is wrapped in :func:`checker`: an answer that still raises ``NotImplementedError``
(the stub of the student notebooks, ``python -m arnb student``) gets the one line
``NAME: not attempted yet``, never a traceback. With ``ARNB_CHECKS=strict`` (set by the test
suite for the solution notebooks) a check that does not pass raises instead, so CI fails when a
reference solution stops passing its checker.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable

import torch

STUB = "raise NotImplementedError"
STRICT_ENV = "ARNB_CHECKS"  # "strict": a failed check raises (CI runs the solutions this way)


class NotAttempted(BaseException):
    """The reader's answer is still the stub (a BaseException, so a checker's own
    ``except Exception`` around the reader's code does not count it as a wrong answer)."""


def is_stub(answer) -> bool:
    """Whether ``answer`` (a function or a class) still contains the stub's ``raise``."""
    parts = [answer]
    if inspect.isclass(answer):
        parts = [v for v in vars(answer).values() if inspect.isfunction(v)]
    for part in parts:
        try:
            if STUB in inspect.getsource(part):
                return True
        except (OSError, TypeError):  # no source (a builtin, a lambda typed in a console)
            continue
    return False


def checker(check: Callable[..., bool]) -> Callable[..., bool]:
    """Wrap ``check_NAME(answer, ...)``: a stub answer prints ``NAME: not attempted yet``.

    A stub is recognised by its source (``raise NotImplementedError``) or when calling it
    raises ``NotImplementedError`` anywhere inside the checker.
    """
    name = check.__name__.removeprefix("check_")

    @functools.wraps(check)
    def wrapped(answer, *args, **kwargs):
        try:
            if is_stub(answer):
                raise NotAttempted
            passed = bool(check(_guard(answer), *args, **kwargs))
        except (NotAttempted, NotImplementedError):
            print(f"{name}: not attempted yet (write your answer in place of the `raise`)")
            passed = False
        if not passed and os.environ.get(STRICT_ENV) == "strict":
            raise AssertionError(f"{name}: the notebook's solution does not pass its checker")
        return passed

    return wrapped


def _guard(answer):
    """A function answer whose ``NotImplementedError`` becomes :class:`NotAttempted`."""
    if inspect.isclass(answer) or not callable(answer):
        return answer

    @functools.wraps(answer)
    def guarded(*args, **kwargs):
        try:
            return answer(*args, **kwargs)
        except NotImplementedError:
            raise NotAttempted from None

    return guarded


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
    except NotImplementedError:
        raise NotAttempted from None
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
