"""One training loop for every model in the book, and checkpoints that survive interruption.

:func:`train` minimises a loss (a mean NLL in nats, usually ``model.nll``) as a
:class:`Schedule` says: AdamW, warm-up plus cosine learning rate, gradient clipping, bfloat16
autocast on CUDA, a step count planned from a time budget, periodic evaluation in float32,
weight averaging, keeping the best weights on a named metric, and atomic checkpoints that a
later call resumes from. :func:`evaluate_nll` scores a whole split; :func:`evaluating`,
:func:`exact_float32`, :func:`cpu_threads`, :class:`Stopwatch` and the :class:`Progress` bar
are the small pieces the chapters share.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from . import distributed
from .validation import set_validation, validation, validation_enabled


class CheckpointError(ValueError):
    """A checkpoint that does not belong to the model it is loaded into."""


DESC_WIDTH = 20  # characters of a bar's description: more squeezes the bar itself


def _seconds(s: float) -> str:
    if s < 10:
        return f"{s:.1f} s"
    if s < 120:
        return f"{s:.0f} s"
    return f"{int(s // 60)} min {s % 60:02.0f} s"


class _Readable:
    """What :class:`Progress` adds to a tqdm class (a mixin, so the tests can try both kinds)."""

    def __init__(self, iterable: Iterable | None = None, desc: str = "", **kwargs):
        self.label, self.note = desc or "", ""
        cut = self.label if len(self.label) <= DESC_WIDTH else self.label[: DESC_WIDTH - 1] + "…"
        super().__init__(iterable, desc=cut, **kwargs)

    def summary(self) -> str:
        """The plain line printed when the bar closes."""
        unit = "iteration" if self.unit == "it" else self.unit
        plural = "" if self.n == 1 else "s"
        line = f"{self.label or 'progress'}: {self.n:,} {unit}{plural}"
        line += f" in {_seconds(self.format_dict['elapsed'])}"
        return f"{line}, {self.note}" if self.note else line

    def finish(self) -> None:
        """Close as complete at the steps actually run (a loop stopped by a time budget)."""
        if not self.disable:
            self.total = self.n
            widget = getattr(self, "container", None)  # tqdm.notebook: (label, bar, text)
            if widget is not None:
                widget.children[1].max = max(self.n, 1)
                widget.children[1].value = self.n
            self.refresh()
        self.close()

    def close(self) -> None:
        # Not for a bar left short of its total (a loop that raised): no line that reads as done.
        done = self.total is None or self.n >= self.total
        report = done and not self.disable and (self.leave or self.leave is None and self.pos == 0)
        line = self.summary() if report else None
        super().close()
        if line is not None:
            print(line, flush=True)


class Progress(_Readable, tqdm):
    """A ``tqdm.auto`` bar (a widget in Jupyter, text elsewhere) that reads right when it is over.

    The description is cut to :data:`DESC_WIDTH` characters so the bar keeps its room.
    :meth:`finish` closes a loop that stopped early (a time budget) as a complete bar of the
    steps it ran; the widget's own maximum is moved too, which setting ``total`` alone does not
    do. A bar that stays (``leave=True``) prints one plain line when it closes, e.g.
    ``training: 1,234 steps in 56 s, loss 1.2345``: the widget needs JavaScript, a line does not
    (a rendered page without the widget scripts, a notebook viewer, a log file). ``note`` is
    the text after the comma.
    """


def progress(iterable: Iterable | None = None, desc: str = "", **kwargs) -> Progress:
    """A :class:`Progress` bar: ``for x in progress(xs, desc="sweep")``, as ``tqdm(...)``."""
    return Progress(iterable, desc=desc, **kwargs)


@dataclass
class History:
    """Losses over training: ``train`` per logged step, ``eval`` per evaluation (dicts of
    metrics)."""

    step: list[int] = field(default_factory=list)
    train: list[float] = field(default_factory=list)
    eval_step: list[int] = field(default_factory=list)
    eval: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    steps_planned: int = 0
    selected_step: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)

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


@dataclass
class Schedule:
    """How long and how fast to train: every number the loop needs, in one place.

    A chapter's sizes nest one of these beside the model's own config, so no numeric setting
    hides in chapter code. ``seconds`` plans the number of steps from a timing taken at the
    start (at most ``steps``): the same budget fits a laptop and a GPU. ``time_limit`` is only
    a safety net that stops the loop early. ``average`` is the decay of a weight average
    (Polyak/EMA) that is evaluated and returned instead of the last iterate. ``compile`` is a
    ``torch.compile`` mode for the loss, forward and backward (``"reduce-overhead"`` also
    replays the step as CUDA graphs on a GPU); the first step, which validates its batch, runs
    eagerly.
    """

    steps: int
    lr: float = 1e-3
    batch_size: int = 64
    warmup: int = 0
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    eval_every: int | None = None
    log_every: int = 10
    seconds: float | None = None
    time_limit: float | None = None
    average: float | None = None
    threads: int | None = None
    checkpoint_every: int | None = None
    accumulate: int = 1
    compile: str | None = None

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.accumulate < 1:
            raise ValueError(f"accumulate must be >= 1, got {self.accumulate}")
        if self.average is not None and not 0.0 < self.average < 1.0:
            raise ValueError(f"average (a decay) must lie in (0, 1), got {self.average}")
        if self.compile is not None and self.compile not in COMPILE_MODES:
            raise ValueError(
                f"compile must be None or one of {COMPILE_MODES}, got {self.compile!r}"
            )


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def lr_at(step: int, steps: int, lr: float, warmup: int, min_ratio: float = 0.1) -> float:
    """Linear warm-up for ``warmup`` steps, then cosine decay to ``min_ratio * lr``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def autocast_dtype(device: torch.device | str) -> torch.dtype | None:
    """The low precision the training steps run in: None off CUDA.

    bfloat16 from compute capability 8.0 (Ampere) on: it has float32's range, so no loss
    scaling is needed. Older GPUs (Colab's T4 is 7.5) have no bfloat16 hardware: float16 there,
    with a gradient scaler so that small gradients do not underflow.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return None
    major, _ = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= 8 else torch.float16


def autocast(device: torch.device | str):
    """Autocast to :func:`autocast_dtype` on CUDA, nothing elsewhere."""
    dtype = autocast_dtype(device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=dtype)


@contextlib.contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """Run a block on ``n`` CPU threads (None: leave the setting), restoring it afterwards.

    Tiny models run faster on one thread: for matrices this small, synchronising two threads
    costs more than the arithmetic.
    """
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Evaluation mode, no gradients and full precision (no autocast) for a block.

    The model's training flag is restored afterwards, also when the block raises.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if torch.device(_device_of(model)).type == "cuda":
                with torch.autocast("cuda", enabled=False):
                    yield model
            else:
                yield model
    finally:
        model.train(was_training)


@contextlib.contextmanager
def exact_float32() -> Iterator[None]:
    """Float32 matrix products and convolutions without TF32 on CUDA for a block (the flags are
    restored afterwards, also when the block raises).

    :func:`arnb.setup` allows TF32 on CUDA (each product's inputs rounded to 10 bits of
    mantissa): faster scoring, and harmless to a mean NLL. The samplers turn it off: two ways of
    drawing from one generator (naive and cached, with and without a KV cache) compute the same
    conditionals with differently shaped products, and must agree draw for draw. Plain float32
    round-off (about 1e-7 relative) flips a draw far more rarely than TF32's (about 1e-3).
    """
    matmul, conv = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, conv


class Stopwatch:
    """Wall time of a block, synchronised with the GPU at both ends: ``with Stopwatch(d) as t``."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.cuda = torch.device(device).type == "cuda"
        self.seconds = 0.0

    def __enter__(self) -> Stopwatch:
        if self.cuda:
            torch.cuda.synchronize()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        self.seconds = time.perf_counter() - self._t0


class WeightAverage:
    """Exponential moving average of a model's weights (Polyak averaging).

    Evaluated instead of the last iterate, it smooths out the noise of the final steps at no
    extra training cost. Buffers (batch statistics, masks) are not averaged: :meth:`averaged`
    copies the model's current ones across when the average is about to be used, not every step.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        ours = list(self.model.parameters())
        torch._foreach_lerp_(ours, [p.detach() for p in model.parameters()], 1.0 - self.decay)

    @torch.no_grad()
    def averaged(self, model: nn.Module) -> nn.Module:
        """The averaged model, with ``model``'s buffers."""
        for mine, theirs in zip(self.model.buffers(), model.buffers()):
            mine.copy_(theirs)
        return self.model


@torch.no_grad()
def evaluate_nll(model: nn.Module, batches: Iterable) -> dict[str, float]:
    """Whole-split NLL of a protocol model, in full precision with fixed batches.

    ``batches`` yields ``x`` or ``(x, conditioning dict)``; the sums are kept in float64.
    Returns ``{"nats": mean nats per example, "nats_per_dim": mean nats per scored dimension}``.
    """
    total, dims, count = 0.0, 0.0, 0
    with evaluating(model):
        device = _device_of(model)
        for batch in batches:
            x, cond = (batch, {}) if isinstance(batch, torch.Tensor) else batch
            x, cond = _to(x, device), _to(cond, device)
            total -= float(model.log_prob(x, **cond).double().sum())
            dims += float(model.scored_dims(x, **cond))
            count += x.shape[0]
    if count == 0:
        raise ValueError("evaluate_nll got no batches")
    return {"nats": total / count, "nats_per_dim": total / dims}


def _device_of(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


class _LossOf(nn.Module):
    """``loss_fn(model, batch)`` as a module's forward, so DistributedDataParallel can wrap it."""

    def __init__(self, model: nn.Module, loss_fn: Callable[[nn.Module, object], torch.Tensor]):
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, batch) -> torch.Tensor:
        return self.loss_fn(self.model, batch)


def _compiled(runner: nn.Module, schedule: Schedule) -> nn.Module:
    """``runner`` through ``torch.compile`` when the schedule asks for it (the first call compiles;
    a GPU's CUDA graphs are recorded over the next few)."""
    if schedule.compile is None:
        return runner
    return torch.compile(runner, mode=schedule.compile)


def _step(runner: nn.Module, opt, batch, schedule: Schedule, device, scaler=None) -> torch.Tensor:
    """One optimizer step on ``batch``, in ``schedule.accumulate`` micro-batches.

    Under DistributedDataParallel the gradients are all-reduced after the last micro-batch only
    (``no_sync`` before it). With a float16 ``scaler`` the loss is scaled before backward and
    the gradients unscaled before clipping. Returns the batch's mean loss (detached).
    """
    opt.zero_grad(set_to_none=True)
    parts, total = schedule.accumulate, 0.0
    for i in range(parts):
        micro = batch if parts == 1 else distributed.split(batch, i, parts)
        wait = i < parts - 1 and isinstance(runner, DistributedDataParallel)
        with runner.no_sync() if wait else contextlib.nullcontext():
            with autocast(device):
                loss = runner(micro) / parts
            (loss if scaler is None else scaler.scale(loss)).backward()
        total = total + loss.detach()
    if scaler is not None:
        scaler.unscale_(opt)
    if schedule.grad_clip is not None:
        nn.utils.clip_grad_norm_(runner.parameters(), schedule.grad_clip)
    if scaler is None:
        opt.step()
    else:
        scaler.step(opt)  # skips the step when a gradient overflowed, then adapts the scale
        scaler.update()
    return total


def plan_steps(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, object], torch.Tensor],
    batches: Iterable,
    schedule: Schedule,
    optimizer: torch.optim.Optimizer | None = None,
    probe: int = 20,
    warm: int = 5,
) -> int:
    """How many steps fit ``schedule.seconds``, timed on throw-away copies of model and optimizer.

    The first ``warm`` steps (kernel selection, allocation) are not timed; of the ``probe``
    timed steps the median counts, so one stalled step (a busy core, a collector pause) does not
    shrink the whole run. The answer lies in ``[warmup + 1, steps]``; without ``seconds`` it is
    ``steps``.
    """
    if schedule.seconds is None:
        return schedule.steps
    device = _device_of(model)
    probe_model = copy.deepcopy(model).train()
    if optimizer is None:
        opt = _default_optimizer(probe_model, schedule)
    else:  # the same kind of optimizer, with the same groups, over the copy's parameters
        twin = {id(p): q for p, q in zip(model.parameters(), probe_model.parameters())}
        groups = [
            {**g, "params": [twin[id(p)] for p in g["params"]]} for g in optimizer.param_groups
        ]
        opt = type(optimizer)(groups)
    data = _forever(batches)
    runner, scaler = _compiled(_LossOf(probe_model, loss_fn), schedule), _scaler(device)
    if schedule.compile is not None:
        warm = max(warm, 10)  # compilation, then the recording of CUDA graphs, are not timed
    with validation(False), cpu_threads(schedule.threads):
        for _ in range(warm):
            _step(runner, opt, _to(next(data), device), schedule, device, scaler)
        times = []
        for _ in range(probe):
            with Stopwatch(device) as watch:
                _step(runner, opt, _to(next(data), device), schedule, device, scaler)
            times.append(watch.seconds)
    per_step = statistics.median(times)
    return max(schedule.warmup + 1, min(schedule.steps, int(schedule.seconds / per_step)))


def _scaler(device: torch.device) -> torch.amp.GradScaler | None:
    """A gradient scaler where the steps run in float16 (pre-Ampere GPUs), else None."""
    if autocast_dtype(device) == torch.float16:
        return torch.amp.GradScaler("cuda")
    return None


def _default_optimizer(model: nn.Module, schedule: Schedule) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=schedule.lr, weight_decay=schedule.weight_decay)


def train(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, object], torch.Tensor],
    batches: Iterable,
    schedule: Schedule,
    *,
    eval_fn: Callable[[nn.Module], dict[str, float]] | None = None,
    select: str | None = None,
    checkpoint: str | Path | None = None,
    progress: bool = True,
    optimizer: torch.optim.Optimizer | None = None,
    desc: str = "training",
) -> History:
    """Train ``model`` on ``batches`` (re-iterated when exhausted) as ``schedule`` says.

    ``loss_fn(model, batch)`` returns a scalar to minimise (usually ``model.nll(x)``). The loop
    owns the concerns every chapter shares:

    - the learning rate: warm-up then cosine decay of each parameter group's initial rate (the
      default optimizer is AdamW at ``schedule.lr``; a given ``optimizer`` keeps its own rates);
    - ``schedule.seconds``: the step count planned from a timing (:func:`plan_steps`);
    - autocast on CUDA for the steps (:func:`autocast_dtype`: bfloat16, or float16 with a
      gradient scaler before Ampere), gradient clipping, a ``tqdm.auto`` bar that closes
      complete also when ``time_limit`` stops the loop early;
    - evaluation every ``eval_every`` steps and at the end: ``eval_fn(model)`` runs under
      :func:`evaluating` (eval mode, no gradients, float32) and scores the weight average when
      ``schedule.average`` is set;
    - ``select``: the name of a metric of ``eval_fn`` to minimise; the model is returned with
      the weights (averaged, if averaging) that scored best, and ``history.selected_step`` says
      when they were taken;
    - ``schedule.threads``: the CPU thread count while training, restored afterwards;
    - every step's loss checked: a loss that is not finite stops training with
      ``FloatingPointError`` at the next log line (every ``log_every`` steps and the last),
      naming the first step it happened at;
    - input validation on the first batch only (then :mod:`arnb.validation` is switched off);
    - with ``checkpoint``, the state saved atomically every ``checkpoint_every`` steps and at the
      end; a later call resumes from that file;
    - under ``torchrun`` with several processes, data parallelism as :mod:`arnb.distributed`
      describes (each rank a slice of every batch; evaluation, selection, checkpoints and the
      progress bar on rank 0; every rank ends with rank 0's weights and history).
    """
    if select is not None and eval_fn is None:
        raise ValueError("select names a metric of eval_fn: pass eval_fn too")
    device = _device_of(model)
    me = distributed.join(device)
    main = me is None or me.is_main
    runner = _LossOf(model, loss_fn)
    if me is not None:
        if schedule.compile is not None:
            raise ValueError("Schedule.compile is not supported with several processes")
        runner = distributed.wrap(runner, device)  # also copies rank 0's weights to every rank
    # The first step validates its batch (checks that read values, which a compiled graph would
    # break at); it runs eagerly, and the compiled loss never sees validation switched on.
    eager_runner, runner = runner, _compiled(runner, schedule)
    opt = optimizer or _default_optimizer(model, schedule)
    for group in opt.param_groups:
        group.setdefault("initial_lr", group["lr"])
    history, start = History(), 0
    if checkpoint is not None and Path(checkpoint).exists():
        state = load_checkpoint(checkpoint, model, opt)
        history, start = History.from_dict(state["history"]), state["step"]
    steps = history.steps_planned or plan_steps(model, loss_fn, batches, schedule, optimizer)
    if me is not None:
        steps = distributed.broadcast_int(steps, device)  # every rank runs rank 0's plan
    history.steps_planned = steps
    average = WeightAverage(model, schedule.average) if schedule.average and main else None
    scaler = _scaler(device)
    best: dict = {"score": math.inf, "state": None}
    t0 = time.time() - history.seconds

    def evaluate(step: int) -> None:
        if eval_fn is None or not main:
            return
        scored = average.averaged(model) if average is not None else model
        with evaluating(scored):
            metrics = {k: float(v) for k, v in eval_fn(scored).items()}
        if select is not None:
            if select not in metrics:
                raise KeyError(f"select={select!r} is not among the metrics {sorted(metrics)}")
            if metrics[select] < best["score"]:
                best["score"] = metrics[select]
                best["state"] = {k: v.detach().clone() for k, v in scored.state_dict().items()}
                history.selected_step = step
        history.eval_step.append(step)
        history.eval.append(metrics)
        bar.set_postfix({k: f"{v:.4f}" for k, v in metrics.items()}, refresh=False)

    def save(step: int) -> None:
        history.seconds = time.time() - t0
        if checkpoint is not None and main:
            save_checkpoint(checkpoint, model, opt, step=step, history=history.as_dict())

    data = _forever(batches)
    for _ in range(start):  # a resumed run continues the data stream where it stopped
        next(data)
    # In a log file (a recipe on a GPU server) a bar refreshed ten times a second is megabytes.
    interactive = sys.stderr.isatty() or "ipykernel" in sys.modules
    bar = Progress(
        total=steps,
        initial=start,
        desc=desc,
        unit="step",
        disable=not (progress and main),
        mininterval=0.1 if interactive else 30.0,
    )
    running = None
    # The first step whose loss was not finite, kept on the device: checking every step costs no
    # host sync, and the check at each log line (already a sync) then misses no step between.
    first_bad = torch.full((), -1, dtype=torch.long, device=device)
    model.train()
    with cpu_threads(schedule.threads), validation(validation_enabled()):
        for step in range(start, steps):
            factor = lr_at(step, steps, 1.0, schedule.warmup, schedule.min_lr_ratio)
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * factor
            batch = _to(next(data), device)
            if me is not None:
                batch = distributed.split(batch, me.rank, me.world_size)
            loss = _step(
                eager_runner if step == start else runner, opt, batch, schedule, device, scaler
            )
            bad = (first_bad < 0) & ~torch.isfinite(loss)
            first_bad = torch.where(bad, torch.full_like(first_bad, step), first_bad)
            if step == start:
                set_validation(False)  # the first batch was checked; the rest skip the syncs
            if average is not None:
                average.update(model)
            bar.update(1)
            if step % schedule.log_every == 0 or step == steps - 1:
                value = loss.item()
                _raise_if_bad(first_bad)
                running = value if running is None else 0.9 * running + 0.1 * value
                history.step.append(step)
                history.train.append(value)
                bar.set_postfix_str(f"loss {running:.4f}", refresh=False)
            done = step + 1
            if schedule.eval_every and done % schedule.eval_every == 0 and done < steps:
                evaluate(done)
            if schedule.checkpoint_every and done % schedule.checkpoint_every == 0:
                save(done)
            if schedule.time_limit is not None:
                stop = time.time() - t0 > schedule.time_limit
                if me is not None:
                    stop = distributed.any_rank(stop, device)  # all ranks stop together
                if stop:
                    steps = done
                    break
    _raise_if_bad(first_bad)  # a time limit can end the loop between two log lines
    if not history.eval_step or history.eval_step[-1] != steps:
        evaluate(steps)
    bar.note = _train_note(history, select)
    bar.finish()  # a loop stopped by its time limit ends as a complete bar of the steps it ran
    save(steps)
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    elif average is not None:
        model.load_state_dict(average.averaged(model).state_dict())
    if me is not None:
        distributed.broadcast_state(model)  # rank 0 chose; every rank returns its choice
        history = History.from_dict(distributed.broadcast_object(history.as_dict()))
    model.eval()
    return history


def _raise_if_bad(first_bad: torch.Tensor) -> None:
    """Stop training if a step's loss was not finite (``first_bad``: that step, or -1)."""
    at = int(first_bad)
    if at >= 0:
        raise FloatingPointError(
            f"the loss was not finite (nan or inf) at step {at}; lower the learning rate"
        )


def _train_note(history: History, select: str | None) -> str:
    """The end of training's plain line: last loss, then the final or the selected evaluation."""
    parts = [f"loss {history.train[-1]:.4f}"] if history.train else []
    if history.eval:
        if select is not None and history.selected_step is not None:
            at = history.eval_step.index(history.selected_step)
            value = history.eval[at][select]
            parts.append(f"best {select} {value:.4f} at step {history.selected_step:,}")
        else:
            parts += [f"{k} {v:.4f}" for k, v in list(history.eval[-1].items())[:3]]
    return ", ".join(parts)


def _model_id(model: nn.Module) -> str:
    return f"{type(model).__module__}.{type(model).__qualname__}"


def save_checkpoint(
    path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None, **extra
) -> None:
    """Write model (and optimiser) state plus ``extra`` plain data atomically: temp file, then
    rename."""
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
    if not isinstance(state, dict) or not {"model_class", "model"} <= state.keys():
        raise CheckpointError(f"{path} is not an arnb checkpoint (no model_class and model)")
    if not isinstance(state["model"], dict):
        raise CheckpointError(f"{path} holds no state dict under 'model'")
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
