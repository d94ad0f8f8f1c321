"""Data-parallel training with ``torch.distributed``, as :func:`arnb.train.train` uses it.

Launched by ``torchrun --nproc_per_node=N ...``, every process (a *rank*) runs the same program.
:func:`arnb.train.train` then

- joins the process group (NCCL on CUDA, gloo on the CPU) and wraps the model in
  ``DistributedDataParallel``, which starts every rank from rank 0's weights and, in each
  backward pass, all-reduces (averages) the gradients, so every rank takes the same step;
- gives each rank its own slice of every batch: the data iterator yields the *global* batch of
  ``schedule.batch_size`` rows, seeded the same on every rank, and rank ``r`` of ``W`` takes
  rows ``r::W``. Ranks never see the same rows, and the effective batch stays
  ``schedule.batch_size`` whatever ``W`` is, so a schedule tuned on one device means the same
  on eight;
- with ``schedule.accumulate = A``, splits a rank's slice into ``A`` micro-batches and
  all-reduces only after the last (``no_sync`` on the others);
- evaluates, keeps the best weights and writes checkpoints on rank 0 only, with the plain
  (unwrapped) model, then sends rank 0's final weights to every rank.

Several machines: the same command on each, with ``--nnodes=M --node_rank=k
--rdzv_backend=c10d --rdzv_endpoint=HOST:PORT`` in place of ``--standalone``.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


class LaunchError(RuntimeError):
    """The environment describes an inconsistent multi-process launch."""


@dataclass(frozen=True)
class Rank:
    """Where this process stands in the job: ``rank`` of ``world_size``, ``local_rank`` on its
    node."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def current() -> Rank | None:
    """This process's place in a ``torchrun`` job, or None for a single process.

    Raises :class:`LaunchError` when ``WORLD_SIZE > 1`` but the rest of the launch is missing or
    inconsistent (a hand-set variable, a rank out of range).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world < 1:
        raise LaunchError(f"WORLD_SIZE must be >= 1, got {world}")
    if world == 1:
        return None
    need = ["RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"]
    missing = [k for k in need if k not in os.environ]
    if missing:
        raise LaunchError(
            f"WORLD_SIZE={world} but {', '.join(missing)} not set: start the program with "
            "`torchrun --standalone --nproc_per_node=N ...` rather than setting WORLD_SIZE by hand"
        )
    rank, local = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    if not 0 <= rank < world or local < 0:
        raise LaunchError(f"RANK={rank}, LOCAL_RANK={local} do not fit WORLD_SIZE={world}")
    return Rank(rank, world, local)


def join(device: torch.device) -> Rank | None:
    """Join the process group (once per process) for a model on ``device``; None if single."""
    me = current()
    if me is None:
        return None
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, rank=me.rank, world_size=me.world_size)
    elif dist.get_world_size() != me.world_size:
        raise LaunchError(
            f"the process group has {dist.get_world_size()} ranks, WORLD_SIZE says {me.world_size}"
        )
    if device.type == "cuda" and device.index not in (None, me.local_rank):
        raise LaunchError(
            f"rank {me.rank} runs on {device}, but LOCAL_RANK={me.local_rank}: put each rank's "
            "model on its own GPU (arnb.config.get_device does so under torchrun)"
        )
    return me


def leave() -> None:
    """Leave the process group at the end of a program (nothing if none was joined)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` now: the rendezvous port of a local test launch."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def simulate_rank(rank: int, world: int, port: int, host: str = "127.0.0.1") -> None:
    """Give this process the environment ``torchrun`` gives process ``rank`` of ``world`` on one
    machine (rendezvous at ``host:port``), so that :func:`join` joins that group. For tests and
    benchmarks that start their processes themselves (``torch.multiprocessing.spawn``)."""
    os.environ.update(
        WORLD_SIZE=str(world),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        MASTER_ADDR=host,
        MASTER_PORT=str(port),
    )


def wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """``DistributedDataParallel(module)``: ``device_ids`` on CUDA, none on the CPU (gloo)."""
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        return DistributedDataParallel(module, device_ids=[device.index or 0])
    return DistributedDataParallel(module)


def split(batch, index: int, parts: int):
    """Rows ``index::parts`` of every tensor in ``batch`` (a tensor, tuple, list or dict)."""
    if isinstance(batch, torch.Tensor):
        if batch.shape[0] % parts:
            raise ValueError(
                f"a batch of {batch.shape[0]} rows does not split into {parts} equal parts "
                "(ranks x accumulation steps): choose a batch_size divisible by it"
            )
        return batch[index::parts]
    if isinstance(batch, (tuple, list)):
        return type(batch)(split(b, index, parts) for b in batch)
    if isinstance(batch, dict):
        return {k: split(v, index, parts) for k, v in batch.items()}
    return batch


def broadcast_int(value: int, device: torch.device) -> int:
    """Rank 0's ``value`` on every rank (a step count planned from a timing, say)."""
    t = torch.tensor([value], dtype=torch.long, device=device)
    dist.broadcast(t, src=0)
    return int(t.item())


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank if ``flag`` is True on any (a time limit reached, say)."""
    t = torch.tensor([int(flag)], dtype=torch.long, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


@torch.no_grad()
def broadcast_state(module: nn.Module) -> None:
    """Overwrite every rank's parameters and buffers with rank 0's."""
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=0)


def broadcast_object(obj):
    """Rank 0's ``obj`` (plain Python data, pickled between the job's own processes)."""
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
