"""Data parallelism: 2 processes x B/2 rows train exactly like 1 process x B rows.

Two CPU processes with the gloo backend, launched the way ``torchrun`` launches them (the same
environment variables), each on one thread; a few steps of a tiny model, a few seconds in all.
"""

import os

import pytest
import torch
import torch.multiprocessing as mp

from arnb import distributed
from arnb.data import Minibatches
from arnb.models import GPT, GPTConfig
from arnb.train import Schedule, load_checkpoint, train


def _tiny_gpt() -> GPT:
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=5, block_size=8, n_layer=1, n_head=2, n_embd=16, dropout=0.0)
    return GPT(cfg)


def _data() -> torch.Tensor:
    return torch.randint(0, 5, (64, 8), generator=torch.Generator().manual_seed(1))


def _run(schedule: Schedule, checkpoint=None, record=None, die_at=None) -> GPT:
    model = _tiny_gpt()
    calls = []

    def loss(m, x):
        calls.append(1)
        if die_at is not None and len(calls) > die_at:
            raise KeyboardInterrupt  # every rank stops at the same step: none is left waiting
        if record is not None:
            record.append(x.clone())
        return m.nll(x)

    try:
        train(
            model,
            loss,
            Minibatches(_data(), batch_size=schedule.batch_size, seed=2),
            schedule,
            checkpoint=checkpoint,
            progress=False,
        )
    except KeyboardInterrupt:
        pass
    return model


def _worker(rank: int, world: int, port: int, out: str) -> None:
    distributed.simulate_rank(rank, world, port)
    torch.set_num_threads(1)
    try:
        for job, acc in [("plain", 1), ("accumulate", 2)]:
            seen: list[torch.Tensor] = []
            model = _run(Schedule(steps=4, lr=1e-2, batch_size=16, accumulate=acc), record=seen)
            result = {"state": model.state_dict(), "seen": seen}
            torch.save(result, os.path.join(out, f"{job}{rank}.pt"))
        # checkpoint every 2 steps, stop in step 3
        _run(
            Schedule(steps=6, lr=1e-2, batch_size=16, checkpoint_every=2),
            checkpoint=os.path.join(out, "c.pt"),
            die_at=3,
        )
    finally:
        distributed.leave()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """One launch of two processes runs every job; the tests read what they wrote."""
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(2, distributed.free_port(), str(out)), nprocs=2, join=True)
    return out


def _ranks(out, job: str) -> list[dict]:
    return [torch.load(out / f"{job}{r}.pt", weights_only=True) for r in range(2)]


def _assert_same(a: dict, b: dict) -> None:
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k


@pytest.mark.parametrize("job", ["plain", "accumulate"])
def test_two_ranks_end_where_one_process_ends(two_ranks, job):
    ranks = _ranks(two_ranks, job)
    acc = 2 if job == "accumulate" else 1
    single = _run(Schedule(steps=4, lr=1e-2, batch_size=16, accumulate=acc))
    for r in ranks:
        _assert_same(r["state"], single.state_dict())
    # each rank saw its own rows, 8 of every 16, and together all of them
    a, b = (torch.stack(r["seen"]) for r in ranks)
    assert a.shape[1] == 16 // 2 // acc
    rows_a = {tuple(row) for row in a.flatten(0, 1).tolist()}
    rows_b = {tuple(row) for row in b.flatten(0, 1).tolist()}
    assert not torch.equal(a, b) and len(rows_a & rows_b) < len(rows_a) / 2


def test_a_checkpoint_written_by_two_ranks_resumes_in_one_process(two_ranks, tmp_path):
    (tmp_path / "c.pt").write_bytes((two_ranks / "c.pt").read_bytes())
    assert load_checkpoint(tmp_path / "c.pt", _tiny_gpt())["step"] == 2
    resumed = _run(Schedule(steps=6, lr=1e-2, batch_size=16), checkpoint=tmp_path / "c.pt")
    straight = _run(Schedule(steps=6, lr=1e-2, batch_size=16))
    _assert_same(resumed.state_dict(), straight.state_dict())


def test_an_inconsistent_launch_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    for k in ["RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"]:
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(distributed.LaunchError, match="torchrun"):
        distributed.current()
    monkeypatch.setenv("RANK", "5")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "1")
    with pytest.raises(distributed.LaunchError, match="do not fit"):
        distributed.current()


def test_a_batch_that_does_not_split_is_refused():
    with pytest.raises(ValueError, match="does not split into 3"):
        distributed.split(torch.zeros(8, 2), 0, 3)
    x, y = distributed.split((torch.arange(6), {"m": torch.arange(6) * 2}), 1, 2)
    assert x.tolist() == [1, 3, 5] and y["m"].tolist() == [2, 6, 10]
