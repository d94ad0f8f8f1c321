"""One training loop for every model in the book, and checkpoints that survive interruption.

:func:`train` minimises a loss (a mean NLL in nats, usually ``model.nll``) with AdamW, a
warm-up plus cosine learning-rate schedule, gradient clipping and, on CUDA, bfloat16 autocast.
It evaluates periodically, keeps a history for plotting, shows a ``tqdm.auto`` progress bar and,
given a checkpoint path, saves its state atomically and resumes from it when run again.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm


class CheckpointError(ValueError):
    """A checkpoint that does not belong to the model it is loaded into."""


@dataclass
class History:
    """Losses over training: ``train`` per logged step, ``eval`` per evaluation (dicts of metrics)."""

    step: list[int] = field(default_factory=list)
    train: list[float] = field(default_factory=list)
    eval_step: list[int] = field(default_factory=list)
    eval: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "step": self.step,
            "train": self.train,
            "eval_step": self.eval_step,
            "eval": self.eval,
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, d: dict) -> History:
        return cls(**d)


def _forever(batches: Iterable) -> Iterator:
    while True:
        empty = True
        for b in batches:
            empty = False
            yield b
        if empty:
            raise ValueError("the training data yielded no batches")


def _to(batch, device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    return batch


def lr_at(step: int, steps: int, lr: float, warmup: int, min_ratio: float = 0.1) -> float:
    """Linear warm-up for ``warmup`` steps, then cosine decay to ``min_ratio * lr``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def autocast(device: torch.device | str):
    """bfloat16 autocast on CUDA (no loss scaling needed), nothing elsewhere."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, object], torch.Tensor],
    batches: Iterable,
    *,
    steps: int,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    warmup: int = 0,
    grad_clip: float | None = 1.0,
    eval_fn: Callable[[nn.Module], dict[str, float]] | None = None,
    eval_every: int | None = None,
    log_every: int = 10,
    checkpoint: str | Path | None = None,
    checkpoint_every: int | None = None,
    progress: bool = True,
    optimizer: torch.optim.Optimizer | None = None,
    time_limit: float | None = None,
) -> History:
    """Train ``model`` for ``steps`` optimiser steps on ``batches`` (re-iterated when exhausted).

    ``loss_fn(model, batch)`` returns a scalar to minimise; ``eval_fn(model)`` returns metrics
    (run under ``torch.no_grad`` and ``model.eval()``) every ``eval_every`` steps and at the end.
    With ``checkpoint``, the model, optimiser, step and history are saved there every
    ``checkpoint_every`` steps and at the end, and a later call resumes from that file.
    ``time_limit`` (seconds) ends training early, a safety net for fixed-budget GPU runs; the
    history then records fewer steps than asked for.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    device = next(model.parameters()).device
    opt = optimizer or torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    history, start = History(), 0
    if checkpoint is not None and Path(checkpoint).exists():
        state = load_checkpoint(checkpoint, model, opt)
        history, start = History.from_dict(state["history"]), state["step"]
    t0 = time.time() - history.seconds

    def evaluate(step: int) -> None:
        if eval_fn is None:
            return
        model.eval()
        with torch.no_grad(), autocast(device):
            metrics = {k: float(v) for k, v in eval_fn(model).items()}
        model.train()
        history.eval_step.append(step)
        history.eval.append(metrics)
        bar.set_postfix({k: f"{v:.4f}" for k, v in metrics.items()}, refresh=False)

    def save(step: int) -> None:
        history.seconds = time.time() - t0
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, opt, step=step, history=history.as_dict())

    model.train()
    data = _forever(batches)
    for _ in range(start):  # a resumed run continues the data stream where it stopped
        next(data)
    # In a log file (a recipe on a GPU server) a bar refreshed ten times a second is megabytes.
    interactive = sys.stderr.isatty() or "ipykernel" in sys.modules
    bar = tqdm(
        range(start, steps),
        desc="training",
        disable=not progress,
        initial=start,
        total=steps,
        mininterval=0.1 if interactive else 30.0,
    )
    running = None
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup)
        batch = _to(next(data), device)
        with autocast(device):
            loss = loss_fn(model, batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"loss is {loss.item()} at step {step}; lower the learning rate"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        value = loss.item() if (step % log_every == 0 or step == steps - 1) else None
        if value is not None:
            running = value if running is None else 0.9 * running + 0.1 * value
            history.step.append(step)
            history.train.append(value)
            bar.set_description(f"training (loss {running:.4f})", refresh=False)
        if eval_every and (step + 1) % eval_every == 0 and step + 1 < steps:
            evaluate(step + 1)
        if checkpoint_every and (step + 1) % checkpoint_every == 0:
            save(step + 1)
        if time_limit is not None and time.time() - t0 > time_limit:
            steps = step + 1
            bar.close()
            break
    if not history.eval_step or history.eval_step[-1] != steps:
        evaluate(steps)
    save(steps)
    model.eval()
    return history


def _model_id(model: nn.Module) -> str:
    return f"{type(model).__module__}.{type(model).__qualname__}"


def save_checkpoint(
    path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None, **extra
) -> None:
    """Write model (and optimiser) state plus ``extra`` plain data atomically: temp file, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "model_class": _model_id(model),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        **extra,
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def load_checkpoint(
    path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> dict:
    """Load a checkpoint into ``model`` (and ``optimizer``); return the whole state dict.

    Loads with ``weights_only=True`` (no arbitrary unpickling) and refuses a checkpoint written
    for another model class or with mismatched parameter shapes, naming the difference.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "model_class" not in state:
        raise CheckpointError(f"{path} is not an arnb checkpoint")
    if state["model_class"] != _model_id(model):
        raise CheckpointError(
            f"{path} holds a {state['model_class']}, cannot load it into a {_model_id(model)}"
        )
    own = model.state_dict()
    mismatched = [k for k, v in state["model"].items() if k in own and own[k].shape != v.shape]
    missing = sorted(set(own) ^ set(state["model"]))
    if mismatched or missing:
        raise CheckpointError(
            f"{path} was saved from a differently sized {state['model_class']}: "
            f"shape differs for {mismatched[:5]}, missing/unexpected {missing[:5]}"
        )
    model.load_state_dict(state["model"])
    if optimizer is not None and state.get("optimizer") is not None:
        optimizer.load_state_dict(state["optimizer"])
    return state
