"""The shared training loop: it learns, checkpoints round-trip exactly, resumes, refuses wrong models."""

import pytest
import torch

from arnb.models import MarkovChain
from arnb.train import CheckpointError, History, load_checkpoint, lr_at, save_checkpoint, train


def _data(n=2048, seed=0):
    truth = MarkovChain(4, 10)
    return truth.sample(n, generator=torch.Generator().manual_seed(seed))


def test_loss_decreases():
    torch.manual_seed(0)
    data = _data()
    model = MarkovChain(4, 10)
    before = model.nll(data).item()
    hist = train(
        model,
        lambda m, x: m.nll(x),
        list(data.split(128)),
        steps=60,
        lr=0.05,
        eval_fn=lambda m: {"nll": m.nll(data)},
        eval_every=20,
        progress=False,
    )
    assert hist.eval[-1]["nll"] < before - 0.5
    assert hist.eval_step == [20, 40, 60]
    assert len(hist.train) >= 6 and hist.seconds > 0


def test_checkpoint_round_trip_is_exact(tmp_path):
    torch.manual_seed(1)
    model = MarkovChain(3, 5)
    opt = torch.optim.AdamW(model.parameters())
    save_checkpoint(tmp_path / "m.pt", model, opt, step=7)
    other = MarkovChain(3, 5)
    state = load_checkpoint(tmp_path / "m.pt", other)
    assert state["step"] == 7
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temp file left


def test_checkpoint_of_another_model_is_refused(tmp_path):
    save_checkpoint(tmp_path / "m.pt", MarkovChain(3, 5))
    with pytest.raises(CheckpointError, match="differently sized"):
        load_checkpoint(tmp_path / "m.pt", MarkovChain(4, 5))

    class NotAChain(torch.nn.Linear):
        pass

    with pytest.raises(CheckpointError, match="holds a arnb.models.markov_chain.MarkovChain"):
        load_checkpoint(tmp_path / "m.pt", NotAChain(2, 2))
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not an arnb checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt", MarkovChain(3, 5))


def test_interrupted_training_resumes_exactly(tmp_path):
    data = _data(512, seed=3)
    batches = list(data.split(64))

    def run(ckpt, die_at=None):
        torch.manual_seed(5)
        model = MarkovChain(4, 10)
        calls = []

        def loss(m, x):
            calls.append(1)
            if die_at is not None and len(calls) > die_at:
                raise KeyboardInterrupt  # the reader stops the run
            return m.nll(x)

        try:
            train(
                model,
                loss,
                batches,
                steps=20,
                lr=0.05,
                progress=False,
                checkpoint=ckpt,
                checkpoint_every=6,
            )
        except KeyboardInterrupt:
            pass
        return model

    straight = run(None)
    run(tmp_path / "c.pt", die_at=9)  # dies in step 9: the checkpoint holds step 6
    assert torch.load(tmp_path / "c.pt", weights_only=True)["step"] == 6
    resumed = run(tmp_path / "c.pt")
    for a, b in zip(straight.parameters(), resumed.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    assert torch.load(tmp_path / "c.pt", weights_only=True)["step"] == 20


def test_non_finite_loss_stops_with_a_clear_error():
    model = MarkovChain(3, 4)
    with pytest.raises(FloatingPointError, match="loss is nan"):
        train(
            model,
            lambda m, x: m.nll(x) * float("nan"),
            [_data(8)[:, :4] % 3],
            steps=3,
            progress=False,
        )


def test_empty_data_and_schedule():
    with pytest.raises(ValueError, match="no batches"):
        train(MarkovChain(3, 4), lambda m, x: m.nll(x), [], steps=2, progress=False)
    assert lr_at(0, 100, 1.0, warmup=10) == pytest.approx(0.1)
    assert lr_at(10, 100, 1.0, warmup=10) == pytest.approx(1.0)
    assert lr_at(100, 100, 1.0, warmup=10) == pytest.approx(0.1)
    h = History(step=[0], train=[1.0])
    assert History.from_dict(h.as_dict()) == h
