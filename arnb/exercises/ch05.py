"""Self-checks for the exercises of chapter 5 (PixelCNN).

Each checker runs the reader's function on several cases, prints what is right and what is
wrong, and returns True when everything is right. It never raises on a wrong answer (a
reader's exception is caught and reported), so a notebook cell keeps running.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..models.pixelcnn import (
    GatedPixelCNN,
    PixelCNN,
    PixelCNNConfig,
    causal_mask,
    centre_channel_mask,
    receptive_field,
)
from . import checker


def _report(name: str, failures: list[str], cases: int) -> bool:
    if failures:
        print(f"{name}: {len(failures)} of {cases} cases wrong")
        for f in failures[:5]:
            print("  -", f)
        return False
    print(f"{name}: correct ({cases} cases)")
    return True


def _as_tensor(value, name: str) -> torch.Tensor:
    try:
        return torch.as_tensor(value).detach().cpu().float()
    except Exception as exc:  # noqa: BLE001 - the reader's value may be anything
        raise ValueError(f"{name} did not return a tensor or array ({exc})") from exc


@checker
def check_causal_mask(fn: Callable[[int, str], torch.Tensor]) -> bool:
    """``fn(kernel_size, mask_type) -> (k, k)`` 0/1 mask of a one-channel masked convolution:
    1 where the kernel may look, 0 elsewhere; type "A" hides the centre, "B" keeps it."""
    failures, cases = [], 0
    for k in (1, 3, 5, 7):
        for t in ("A", "B"):
            cases += 1
            want = causal_mask(1, 1, k, t)[0, 0]
            try:
                got = _as_tensor(fn(k, t), "fn")
            except Exception as exc:  # noqa: BLE001
                failures.append(f"k={k}, type {t}: raised {type(exc).__name__}: {exc}")
                continue
            if got.shape != want.shape:
                failures.append(
                    f"k={k}, type {t}: shape {tuple(got.shape)}, expected {tuple(want.shape)}"
                )
            elif not torch.equal(got, want):
                wrong = (got != want).nonzero().tolist()
                failures.append(
                    f"k={k}, type {t}: wrong at (row, col) {wrong[:4]}; expected\n{want.int()}"
                )
    return _report("causal mask", failures, cases)


@checker
def check_colour_mask(fn: Callable[[str], torch.Tensor]) -> bool:
    """``fn(mask_type) -> (3, 3)`` 0/1 mask at the centre pixel: entry [out, in] says whether
    output colour ``out`` (R, G, B) may see input colour ``in`` of the same pixel."""
    failures = []
    for t in ("A", "B"):
        want = centre_channel_mask(3, 3, t, groups=3)
        try:
            got = _as_tensor(fn(t), "fn")
        except Exception as exc:  # noqa: BLE001
            failures.append(f"type {t}: raised {type(exc).__name__}: {exc}")
            continue
        if got.shape != want.shape:
            failures.append(f"type {t}: shape {tuple(got.shape)}, expected (3, 3)")
        elif not torch.equal(got, want):
            names = "RGB"
            wrong = [
                f"{names[o]} sees {names[i]}: {int(got[o, i])}, should be {int(want[o, i])}"
                for o, i in (got != want).nonzero().tolist()
            ]
            failures.append(f"type {t}: " + "; ".join(wrong))
    return _report("colour mask", failures, 2)


def blind_spot(model, i: int, j: int) -> torch.Tensor:
    """Reference: earlier pixels within ``reach`` of (i, j) that the conditional of x[0, i, j]
    does not see, as an ``(H, W)`` bool map."""
    cfg = model.config
    r = cfg.reach
    seen = receptive_field(model, i, j)[0]
    box = torch.zeros_like(seen)
    box[max(0, i - r) : i, max(0, j - r) : j + r + 1] = True
    box[i, max(0, j - r) : j] = True
    return box & ~seen


@checker
def check_blind_spot(fn: Callable[[object, int, int], torch.Tensor]) -> bool:
    """``fn(model, i, j) -> (H, W)`` bool: the earlier pixels within ``model.config.reach`` rows
    above (and columns either side) of pixel (i, j) that its conditional does *not* depend on.
    Checked on a plain PixelCNN (which has a blind spot) and a gated one (which has none)."""
    torch.manual_seed(0)
    cfg = PixelCNNConfig(
        channels=1, height=12, width=12, num_classes=2, hidden=4, layers=3, first_kernel=3
    )
    models = {"plain": PixelCNN(cfg), "gated": GatedPixelCNN(cfg)}
    failures, cases = [], 0
    for name, model in models.items():
        for i, j in ((9, 5), (6, 2)):
            cases += 1
            want = blind_spot(model, i, j)
            try:
                got = _as_tensor(fn(model, i, j), "fn").bool()
            except Exception as exc:  # noqa: BLE001
                failures.append(
                    f"{name} PixelCNN, pixel ({i}, {j}): raised {type(exc).__name__}: {exc}"
                )
                continue
            if got.shape != want.shape:
                failures.append(
                    f"{name}, pixel ({i}, {j}): shape {tuple(got.shape)}, expected {tuple(want.shape)}"
                )
            elif not torch.equal(got, want):
                failures.append(
                    f"{name} PixelCNN, pixel ({i}, {j}): {int(want.sum())} blind pixels "
                    f"expected, you found {int(got.sum())} ({int((got != want).sum())} differ)"
                )
    return _report("blind spot", failures, cases)
