"""Self-checks for the exercises of chapter 5 (PixelCNN).

Each checker runs the reader's function on several cases, prints what is right and what is
wrong (expected against got, never the solution), and returns True when everything is right.
A reader's exception is reported as a wrong case, so a notebook cell keeps running.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import torch
import torch.nn.functional as F

from ..models.pixelcnn import (
    GatedPixelCNN,
    PixelCNN,
    PixelCNNConfig,
    causal_mask,
    receptive_field,
    vertical_mask,
)
from . import call, checker, report, require_callable

COLOURS = "RGB"


def _tensor(value) -> torch.Tensor:
    return torch.as_tensor(value).detach().cpu().float()


@checker
def check_reverse_mask(fn: Callable[[int, str], torch.Tensor]) -> bool:
    """``fn(k, mask_type) -> (k, k)`` 0/1 mask of a one-channel masked convolution for the
    order "bottom row first, each row right to left"; type "A" hides the centre, "B" keeps it."""
    require_callable(fn, "check_reverse_mask(reverse_mask)")
    problems, cases = [], 0
    for k in (1, 3, 5, 7):
        for t in ("A", "B"):
            cases += 1
            want = causal_mask(1, 1, k, t)[0, 0].flip(0, 1)
            got, err = call(fn, k, t)
            if err:
                problems.append(f"k={k}, type {t}: {err}")
                continue
            got = _tensor(got)
            if got.shape != want.shape:
                problems.append(
                    f"k={k}, type {t}: shape {tuple(got.shape)}, expected {tuple(want.shape)}"
                )
            elif not torch.equal(got, want):
                wrong = (got != want).nonzero().tolist()
                problems.append(
                    f"k={k}, type {t}: {len(wrong)} wrong cells, e.g. (row, col) {wrong[:3]}"
                )
    return report("reverse_mask", problems, cases)


@checker
def check_colour_mask(fn: Callable[[str, str], torch.Tensor]) -> bool:
    """``fn(order, mask_type) -> (3, 3)`` 0/1 mask at the centre pixel: entry ``[out, in]``
    (both in R, G, B order) says whether output colour ``out`` may see input colour ``in`` of
    the same pixel, when the colours are generated in ``order`` (e.g. ``"GBR"``)."""
    require_callable(fn, "check_colour_mask(colour_mask)")
    problems, cases = [], 0
    for order in ("RGB", "GBR", "BRG", "RBG", "BGR"):
        pos = torch.tensor([order.index(c) for c in COLOURS])
        for t in ("A", "B"):
            cases += 1
            p_out, p_in = pos.unsqueeze(1), pos.unsqueeze(0)
            want = (p_in < p_out if t == "A" else p_in <= p_out).float()
            got, err = call(fn, order, t)
            if err:
                problems.append(f"order {order}, type {t}: {err}")
                continue
            got = _tensor(got)
            if got.shape != (3, 3):
                problems.append(f"order {order}, type {t}: shape {tuple(got.shape)}, not (3, 3)")
            elif not torch.equal(got, want):
                wrong = [
                    f"{COLOURS[o]} sees {COLOURS[i]}: got {int(got[o, i])}, "
                    f"expected {int(want[o, i])}"
                    for o, i in (got != want).nonzero().tolist()
                ]
                problems.append(f"order {order}, type {t}: " + "; ".join(wrong[:3]))
    return report("colour_mask", problems, cases)


def _expected_blind_spot(model, i: int, j: int) -> torch.Tensor:
    r = model.config.reach
    seen = receptive_field(model, i, j)[0]
    box = torch.zeros_like(seen)
    box[max(0, i - r) : i, max(0, j - r) : j + r + 1] = True
    box[i, max(0, j - r) : j] = True
    return box & ~seen


@checker
def check_blind_spot(fn: Callable[[object, int, int], torch.Tensor]) -> bool:
    """``fn(model, i, j) -> (H, W)`` bool: the earlier pixels within ``model.config.reach`` rows
    above (and columns either side), or at most ``reach`` to the left in row ``i``, that the
    conditional of pixel (i, j) does *not* depend on. Checked on a plain PixelCNN (which has a
    blind spot), a gated one (which has none) and a gated one with every layer dilated by 2
    (whose field has holes, also in row ``i``)."""
    require_callable(fn, "check_blind_spot(blind_spot)")
    torch.manual_seed(0)
    cfg = PixelCNNConfig(
        channels=1, height=12, width=12, num_classes=2, hidden=4, layers=3, first_kernel=3
    )
    dilated = replace(cfg, dilations=(2, 2, 2))
    models = {
        "plain": PixelCNN(cfg),
        "gated": GatedPixelCNN(cfg),
        "dilated gated": GatedPixelCNN(dilated),
    }
    problems, cases = [], 0
    for name, model in models.items():
        for i, j in ((9, 5), (6, 2), (1, 10)):
            cases += 1
            want = _expected_blind_spot(model, i, j)
            got, err = call(fn, model, i, j)
            if err:
                problems.append(f"{name} PixelCNN, pixel ({i}, {j}): {err}")
                continue
            got = _tensor(got).bool()
            if got.shape != want.shape:
                problems.append(
                    f"{name} PixelCNN, pixel ({i}, {j}): shape {tuple(got.shape)}, "
                    f"expected {tuple(want.shape)}"
                )
            elif not torch.equal(got, want):
                problems.append(
                    f"{name} PixelCNN, pixel ({i}, {j}): expected {int(want.sum())} blind "
                    f"pixels, got {int(got.sum())} ({_differ(got != want)})"
                )
    return report("blind_spot", problems, cases)


def _differ(wrong: torch.Tensor) -> str:
    n = int(wrong.sum())
    return f"{n} differs" if n == 1 else f"{n} differ"


def _field_by_gradient(masks: list[torch.Tensor]) -> torch.Tensor:
    """Reference for :func:`check_stack_field`: convolutions with all kept weights positive
    (so no path cancels), the gradient of the centre output with respect to a large input."""
    R = sum(m.shape[0] // 2 for m in masks)
    S = sum(m.shape[1] // 2 for m in masks)
    h = torch.ones(1, 1, 4 * R + 1, 4 * S + 1, dtype=torch.float64, requires_grad=True)
    out = h
    for m in masks:
        out = F.conv2d(out, m.to(torch.float64)[None, None], padding="same")
    (grad,) = torch.autograd.grad(out[0, 0, 2 * R, 2 * S], h)
    return grad[0, 0, R : 3 * R + 1, S : 3 * S + 1] != 0


def _stack_cases() -> dict[str, list[torch.Tensor]]:
    def raster(k, t):
        return causal_mask(1, 1, k, t)[0, 0]

    g = torch.Generator().manual_seed(5)
    random = [(torch.rand(k, k2, generator=g) < 0.5).float() for k, k2 in ((3, 5), (5, 3), (3, 3))]
    for m in random:
        m[0, 0] = 1  # no empty mask
    return {
        "one type-A 3x3 layer": [raster(3, "A")],
        "plain stack: type A, then 3 type B (3x3)": [raster(3, "A")] + [raster(3, "B")] * 3,
        "type A 5x5, then 2 type B 3x3": [raster(5, "A"), raster(3, "B"), raster(3, "B")],
        "vertical stack (first, then 2 later layers)": [
            vertical_mask(1, 1, 3, True)[0, 0],
            vertical_mask(1, 1, 3, False)[0, 0],
            vertical_mask(1, 1, 3, False)[0, 0],
        ],
        "horizontal stack (1x3 type A, then 1x3 type B)": [
            causal_mask(1, 1, (1, 3), "A")[0, 0],
            causal_mask(1, 1, (1, 3), "B")[0, 0],
        ],
        "three random masks": random,
    }


@checker
def check_stack_field(fn: Callable[[list[torch.Tensor]], torch.Tensor]) -> bool:
    """``fn(masks) -> (2R + 1, 2S + 1)`` bool: the receptive field of a stack of masked
    convolutions (``masks``: their ``(kh, kw)`` kernels, first layer first), centred on the
    output pixel. Checked against gradients through convolutions with those masks."""
    require_callable(fn, "check_stack_field(stack_field)")
    problems = []
    cases = _stack_cases()
    for name, masks in cases.items():
        want = _field_by_gradient(masks)
        got, err = call(fn, [m.clone() for m in masks])
        if err:
            problems.append(f"{name}: {err}")
            continue
        got = _tensor(got) != 0
        if got.shape != want.shape:
            problems.append(f"{name}: shape {tuple(got.shape)}, expected {tuple(want.shape)}")
        elif not torch.equal(got, want):
            problems.append(
                f"{name}: expected {int(want.sum())} inputs in the field, got {int(got.sum())} "
                f"({int((got & ~want).sum())} too many, {int((want & ~got).sum())} missing)"
            )
    return report("stack_field", problems, len(cases))


def _tiny_models() -> list[tuple[str, GatedPixelCNN]]:
    torch.manual_seed(0)
    small = dict(height=5, width=4, hidden=6, layers=2, first_kernel=3)
    return [
        ("binary, 1 channel", GatedPixelCNN(PixelCNNConfig(channels=1, num_classes=2, **small))),
        ("16 values, 1 channel", GatedPixelCNN(PixelCNNConfig(num_classes=16, **small))),
        ("4 values, RGB", GatedPixelCNN(PixelCNNConfig(channels=3, num_classes=4, **small))),
    ]


@checker
def check_bits_per_dim(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> bool:
    """``fn(logits, x) -> (B,)`` bits per dimension of each image, for the logits of a
    Bernoulli head ``(B, C, H, W)`` or a categorical head ``(B, C, H, W, K)``; compared with
    ``model.log_prob`` of small gated PixelCNNs."""
    require_callable(fn, "check_bits_per_dim(bits_per_dim)")
    problems = []
    models = _tiny_models()
    g = torch.Generator().manual_seed(1)
    for name, model in models:
        cfg = model.config
        x = torch.randint(cfg.num_classes, (3, cfg.channels, cfg.height, cfg.width), generator=g)
        with torch.no_grad():
            logits = model(x)
            want = -model.log_prob(x) / (cfg.dims * math.log(2))
        got, err = call(fn, logits.clone(), x.clone())
        if err:
            problems.append(f"{name}: {err}")
            continue
        got = _tensor(got)
        if got.shape != want.shape:
            problems.append(f"{name}: shape {tuple(got.shape)}, expected {tuple(want.shape)}")
        elif not torch.allclose(got, want, rtol=1e-4, atol=1e-6):
            problems.append(
                f"{name}: expected {[round(v, 4) for v in want.tolist()]}, "
                f"got {[round(v, 4) for v in got.tolist()]}"
            )
    return report("bits_per_dim", problems, len(models))


@checker
def check_sample_cropped(fn: Callable[[GatedPixelCNN, int, torch.Generator], torch.Tensor]) -> bool:
    """``fn(model, n, generator) -> (n, C, H, W)``: the same images as
    ``model.sample_naive(n, generator=...)`` from an equally seeded generator, with every call
    of the network on a crop of at most ``(reach + 1) * (2 * reach + 1)`` pixels."""
    require_callable(fn, "check_sample_cropped(sample_cropped)")
    torch.manual_seed(0)
    small = dict(hidden=6, layers=2, first_kernel=3)
    models = {
        "binary 9x10": PixelCNNConfig(channels=1, height=9, width=10, num_classes=2, **small),
        "RGB 4 values 7x8": PixelCNNConfig(channels=3, height=7, width=8, num_classes=4, **small),
    }
    problems = []
    for name, cfg in models.items():
        model = GatedPixelCNN(cfg).double().eval()  # float64: crops and full images agree
        with torch.no_grad():  # larger weights: a missing input changes the draws visibly
            for p in model.parameters():
                p.mul_(2)
        want = model.sample_naive(3, generator=torch.Generator().manual_seed(7))
        sizes: list[int] = []
        full = model.logits_from_float

        def recording(h, label=None, full=full, sizes=sizes):
            sizes.append(h.shape[-2] * h.shape[-1])
            return full(h, label)

        model.logits_from_float = recording  # count what each network call gets to see
        try:
            got, err = call(fn, model, 3, torch.Generator().manual_seed(7))
        finally:
            del model.logits_from_float
        if err:
            problems.append(f"{name}: {err}")
            continue
        got = torch.as_tensor(got).cpu()
        r = cfg.reach
        limit = (r + 1) * (2 * r + 1)
        if got.shape != want.shape:
            problems.append(f"{name}: shape {tuple(got.shape)}, expected {tuple(want.shape)}")
            continue
        same = (got.long() == want).flatten(1).all(1)
        if not same.all():
            differ = int((got.long() != want).sum())
            problems.append(
                f"{name}: {int((~same).sum())} of 3 images differ from model.sample_naive "
                f"with the same seed ({differ} values)"
            )
        if not sizes:
            problems.append(f"{name}: the network was never called (model.logits_from_float)")
        elif max(sizes) > limit:
            problems.append(
                f"{name}: a network call saw {max(sizes)} pixels; with reach {r} a crop needs "
                f"at most {limit}"
            )
    return report("sample_cropped", problems, len(models))
