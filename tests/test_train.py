"""The shared training loop and its contexts: it learns, keeps the best or averaged weights,
restores every setting it changes, checkpoints round-trip exactly and resume, wrong models are
refused; plus the one validation module and the one batch iterator."""

import time
import types

import pytest
import torch
import torch.nn.functional as F

from arnb.data import Minibatches, random_windows
from arnb.protocol import ARModule
from arnb.train import (
    CheckpointError,
    History,
    Schedule,
    Stopwatch,
    _LossOf,
    _step,
    autocast_dtype,
    cpu_threads,
    evaluate_nll,
    evaluating,
    exact_float32,
    load_checkpoint,
    lr_at,
    plan_steps,
    save_checkpoint,
    train,
)
from arnb.validation import as_indices, check_int, validation, validation_enabled


class Independent(ARModule):
    """``D`` independent categoricals: the smallest model that follows the protocol."""

    def __init__(self, dims: int, num_classes: int):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.randn(dims, num_classes) * 0.1)

    def forward(self, x):
        return self.logits.expand(x.shape[0], -1, -1)

    def log_prob(self, x):
        x = as_indices(x, self.logits.shape[1], (self.logits.shape[0],))
        logp = F.log_softmax(self(x), -1)
        return logp.gather(-1, x.unsqueeze(-1)).squeeze(-1).sum(-1)


def _data(n=2048, seed=0, dims=6, k=4):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(torch.randn(dims, k, generator=g) * 2, -1)
    return torch.multinomial(probs.repeat(n, 1), 1, generator=g).view(n, dims)


def _loss(m, x):
    return m.nll(x)


def test_loss_decreases_and_evaluates_on_schedule():
    torch.manual_seed(0)
    data = _data()
    model = Independent(6, 4)
    before = model.nll(data).item()
    hist = train(
        model,
        _loss,
        Minibatches(data, batch_size=128),
        Schedule(steps=60, lr=0.05, eval_every=20),
        eval_fn=lambda m: {"nll": m.nll(data)},
        progress=False,
    )
    assert hist.eval[-1]["nll"] < before - 0.05
    assert hist.eval_step == [20, 40, 60]
    assert len(hist.train) >= 6 and hist.seconds > 0 and hist.steps_planned == 60
    assert not model.training


def test_select_returns_the_weights_that_scored_best():
    torch.manual_seed(0)
    model, scores, seen = Independent(3, 2), iter([3.0, 1.0, 2.0]), []

    def eval_fn(m):
        seen.append(m.logits.detach().clone())
        return {"score": next(scores)}

    hist = train(
        model,
        _loss,
        [_data(64, dims=3, k=2)],
        Schedule(steps=30, lr=0.1, eval_every=10),
        eval_fn=eval_fn,
        select="score",
        progress=False,
    )
    assert hist.selected_step == 20
    assert torch.equal(model.logits, seen[1])
    assert not torch.equal(model.logits, seen[2])  # not simply the last iterate


def test_select_needs_a_known_metric():
    with pytest.raises(ValueError, match="pass eval_fn"):
        train(Independent(2, 2), _loss, [_data(8, dims=2, k=2)], Schedule(steps=1), select="x")
    with pytest.raises(KeyError, match="not among the metrics"):
        train(
            Independent(2, 2),
            _loss,
            [_data(8, dims=2, k=2)],
            Schedule(steps=1),
            eval_fn=lambda m: {"nll": 0.0},
            select="val",
            progress=False,
        )


def test_weight_average_is_the_exponential_average_of_the_iterates():
    torch.manual_seed(0)
    model, iterates, decay = Independent(3, 2), [], 0.8
    start = model.logits.detach().clone()

    def loss(m, x):
        iterates.append(m.logits.detach().clone())  # the weights before each step
        return m.nll(x)

    evaluated = []
    train(
        model,
        loss,
        [_data(64, dims=3, k=2)],
        Schedule(steps=10, lr=0.1, average=decay, eval_every=5),
        eval_fn=lambda m: evaluated.append(m.logits.detach().clone()) or {"n": 0.0},
        progress=False,
    )
    # After step s the iterate is iterates[s + 1]; the average starts from the initial weights.
    avg = start
    for w in iterates[1:6]:
        avg = decay * avg + (1 - decay) * w
    assert torch.allclose(evaluated[0], avg, atol=1e-6)
    assert torch.equal(model.logits, evaluated[-1])  # the average is what comes back


def test_threads_and_validation_are_set_while_training_and_restored():
    seen = []

    def loss(m, x):
        seen.append((torch.get_num_threads(), validation_enabled()))
        return m.nll(x)

    before = torch.get_num_threads()
    train(
        Independent(2, 2),
        loss,
        [_data(8, dims=2, k=2)],
        Schedule(steps=3, threads=1),
        progress=False,
    )
    assert seen == [(1, True), (1, False), (1, False)]  # the first batch is checked
    assert torch.get_num_threads() == before and validation_enabled()


def test_time_limit_stops_early_and_records_the_steps_run():
    hist = train(
        Independent(2, 2),
        _loss,
        [_data(8, dims=2, k=2)],
        Schedule(steps=10**6, time_limit=0.2, log_every=1),
        progress=False,
    )
    assert 1 <= hist.step[-1] + 1 < 10**6 and hist.eval_step == []
    assert hist.steps_planned == 10**6


def test_plan_steps_fits_the_budget_and_stays_in_bounds():
    batches = [_data(64, dims=4, k=3)]
    sched = Schedule(steps=10**7, seconds=0.3, warmup=5)
    planned = plan_steps(Independent(4, 3), _loss, batches, sched)
    assert 6 <= planned < 10**7
    assert plan_steps(Independent(4, 3), _loss, batches, Schedule(steps=7)) == 7
    tiny = Schedule(steps=10**7, seconds=1e-9, warmup=5)
    assert plan_steps(Independent(4, 3), _loss, batches, tiny) == 6


def test_plan_steps_is_not_shrunk_by_one_stalled_step():
    batches = [_data(64, dims=4, k=3)]
    sched = Schedule(steps=10**7, seconds=1.0)
    calls = []

    def stalls_once(m, x):
        calls.append(1)
        if len(calls) == 8:  # a timed step: the 5 warm-up steps come first
            time.sleep(0.5)
        return m.nll(x)

    clean = plan_steps(Independent(4, 3), _loss, batches, sched)
    stalled = plan_steps(Independent(4, 3), stalls_once, batches, sched)
    assert len(calls) == 25
    # averaged over 20 steps, the 0.5 s stall would cut the plan by a factor of 10 or more
    assert stalled > clean / 5


def test_a_given_optimizer_keeps_its_own_learning_rate():
    model = Independent(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    lrs = []

    def loss(m, x):
        lrs.append(opt.param_groups[0]["lr"])
        return m.nll(x)

    train(
        model,
        loss,
        [_data(8, dims=2, k=2)],
        Schedule(steps=3, lr=1e-3),
        optimizer=opt,
        progress=False,
    )
    assert lrs[0] == pytest.approx(0.5)


def test_plan_steps_times_a_copy_of_a_given_optimizer_with_its_groups():
    model = Independent(4, 3)
    groups = [{"params": [model.logits], "weight_decay": 0.1}]
    opt = torch.optim.AdamW(groups, lr=0.01, betas=(0.9, 0.99))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sched = Schedule(steps=10**6, seconds=0.2)
    assert plan_steps(model, _loss, [_data(32, dims=4, k=3)], sched, opt) >= 1
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert opt.state == {}  # the real optimizer took no step


def test_evaluating_restores_the_training_flag_even_after_an_error():
    model = Independent(2, 2).train()
    with pytest.raises(RuntimeError), evaluating(model):
        assert not model.training and not torch.is_grad_enabled()
        raise RuntimeError
    assert model.training and torch.is_grad_enabled()


def test_exact_float32_turns_tf32_off_and_restores_it_even_after_an_error(tf32):
    with pytest.raises(RuntimeError), exact_float32():
        assert tf32() == (False, False)
        raise RuntimeError
    assert tf32() == (True, True)


def _gpt():
    from arnb.models.gpt import GPT, GPTConfig

    return GPT(GPTConfig(vocab_size=5, block_size=8, n_layer=1, n_head=2, n_embd=8))


def _char_rnn():
    from arnb.models.rnn_lm import CharRNN, RNNConfig

    return CharRNN(RNNConfig(vocab_size=5, cell="gru", embed=4, hidden=8, layers=1))


def _pixelcnn():
    from arnb.models.pixelcnn import GatedPixelCNN, PixelCNNConfig

    cfg = PixelCNNConfig(channels=1, height=4, width=4, num_classes=2, hidden=4, layers=2)
    return GatedPixelCNN(cfg)


@pytest.mark.parametrize(
    "build, kwargs",
    [
        (_gpt, dict(length=6, use_cache=True)),
        (_gpt, dict(length=6, use_cache=False)),
        (_char_rnn, dict(length=6, use_cache=True)),
        (_char_rnn, dict(length=6, use_cache=False)),
        (_pixelcnn, dict(method="naive")),
        (_pixelcnn, dict(method="fast")),
        (_pixelcnn, dict(method="cached")),
    ],
)
def test_samplers_compute_without_tf32_and_restore_it(tf32, build, kwargs):
    """Two samplers of one model agree draw for draw only if neither rounds to TF32 (a GPU's
    default under arnb.setup): every forward pass inside ``sample`` sees it off."""
    seen = []

    class Products(torch.overrides.TorchFunctionMode):  # the flags at every product computed
        def __torch_function__(self, func, types, args=(), kwargs=None):
            name = getattr(func, "__name__", "")
            if any(k in name for k in ("conv", "linear", "matmul", "mm", "einsum", "gru")):
                seen.append((name, tf32()))
            return func(*args, **(kwargs or {}))

    model = build()
    with Products():
        model.sample(2, generator=torch.Generator().manual_seed(0), **kwargs)
    assert seen and {flags for _, flags in seen} == {(False, False)}, seen
    assert tf32() == (True, True)


def test_evaluate_nll_matches_a_direct_computation():
    torch.manual_seed(0)
    model, data = Independent(5, 3), _data(300, dims=5, k=3)
    got = evaluate_nll(model, data.split(64))
    direct = -model.log_prob(data).detach().double()
    assert got["nats"] == pytest.approx(float(direct.mean()), rel=1e-6)
    assert got["nats_per_dim"] == pytest.approx(float(direct.mean()) / 5, rel=1e-6)
    with pytest.raises(ValueError, match="no batches"):
        evaluate_nll(model, [])


def test_cpu_threads_and_stopwatch():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), cpu_threads(1):
        assert torch.get_num_threads() == 1
        raise RuntimeError
    assert torch.get_num_threads() == before
    with Stopwatch() as watch:
        sum(range(1000))
    assert watch.seconds > 0


def test_checkpoint_round_trip_is_exact(tmp_path):
    torch.manual_seed(1)
    model = Independent(3, 5)
    opt = torch.optim.AdamW(model.parameters())
    save_checkpoint(tmp_path / "m.pt", model, opt, step=7)
    other = Independent(3, 5)
    state = load_checkpoint(tmp_path / "m.pt", other)
    assert state["step"] == 7
    assert torch.equal(model.logits, other.logits)
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temp file left


def test_checkpoint_of_another_model_is_refused(tmp_path):
    save_checkpoint(tmp_path / "m.pt", Independent(3, 5))
    with pytest.raises(CheckpointError, match="differently sized"):
        load_checkpoint(tmp_path / "m.pt", Independent(4, 5))

    class NotIt(torch.nn.Linear):
        pass

    with pytest.raises(CheckpointError, match="holds a test_train.Independent"):
        load_checkpoint(tmp_path / "m.pt", NotIt(2, 2))
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not an arnb checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt", Independent(3, 5))
    torch.save({"model_class": "test_train.Independent"}, tmp_path / "no_model.pt")
    with pytest.raises(CheckpointError, match="not an arnb checkpoint"):
        load_checkpoint(tmp_path / "no_model.pt", Independent(3, 5))


def test_interrupted_training_resumes_exactly(tmp_path):
    batches = list(_data(512, seed=3).split(64))

    def run(ckpt, die_at=None):
        torch.manual_seed(5)
        model = Independent(6, 4)
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
                Schedule(steps=20, lr=0.05, checkpoint_every=6),
                progress=False,
                checkpoint=ckpt,
            )
        except KeyboardInterrupt:
            pass
        return model

    straight = run(None)
    run(tmp_path / "c.pt", die_at=9)  # dies in step 9: the checkpoint holds step 6
    assert torch.load(tmp_path / "c.pt", weights_only=True)["step"] == 6
    resumed = run(tmp_path / "c.pt")
    assert torch.allclose(straight.logits, resumed.logits, atol=1e-6)
    assert torch.load(tmp_path / "c.pt", weights_only=True)["step"] == 20


def test_non_finite_loss_stops_with_a_clear_error():
    with pytest.raises(FloatingPointError, match="not finite .* at step 0"):
        train(
            Independent(2, 2),
            lambda m, x: m.nll(x) * float("nan"),
            [_data(8, dims=2, k=2)],
            Schedule(steps=3),
            progress=False,
        )


@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_a_bad_loss_between_log_lines_is_not_missed(bad, monkeypatch):
    """Step 3's loss is not finite, steps 0 and 10 are logged: the error names step 3, also
    when a time limit ends the run after step 5, before the next log line."""
    calls = []

    def loss(m, x):
        calls.append(1)
        scale = bad if len(calls) == 4 else 1.0  # plan_steps is off: call 4 is step 3
        return m.nll(x) * scale

    # a clock that passes the time limit once step 5 has run
    clock = types.SimpleNamespace(
        time=lambda: 100.0 if len(calls) >= 6 else 0.0, perf_counter=time.perf_counter
    )
    monkeypatch.setattr("arnb.train.time", clock)
    for schedule in [Schedule(steps=12, log_every=10), Schedule(steps=12, time_limit=1.0)]:
        calls.clear()
        with pytest.raises(FloatingPointError, match="at step 3;"):
            train(Independent(2, 2), loss, [_data(8, dims=2, k=2)], schedule, progress=False)
        assert len(calls) == (11 if schedule.time_limit is None else 6)


def test_empty_data_bad_schedules_and_the_learning_rate_curve():
    with pytest.raises(ValueError, match="no batches"):
        train(Independent(2, 2), _loss, [], Schedule(steps=2), progress=False)
    for bad in [dict(steps=-1), dict(steps=1, lr=0), dict(steps=1, average=1.0)]:
        with pytest.raises(ValueError):
            Schedule(**bad)
    assert lr_at(0, 100, 1.0, warmup=10) == pytest.approx(0.1)
    assert lr_at(10, 100, 1.0, warmup=10) == pytest.approx(1.0)
    assert lr_at(100, 100, 1.0, warmup=10) == pytest.approx(0.1)
    h = History(step=[0], train=[1.0], selected_step=3)
    assert History.from_dict(h.as_dict()) == h


# ------------------------------------------------------------------------------ validation


def test_as_indices_accepts_every_integer_dtype_without_overflow():
    img = torch.tensor([[16, 240]], dtype=torch.uint8)
    assert as_indices(img, 256).dtype == torch.long  # 256 levels: no wrap-around of the bound
    assert torch.equal(as_indices(img.int(), 256), img.long())
    with pytest.raises(
        ValueError, match=r"x values must lie in \[0, 15\], found range \[16, 240\]"
    ):
        as_indices(img, 16)
    with pytest.raises(TypeError, match="integer category indices"):
        as_indices(img.float(), 256)
    with pytest.raises(ValueError, match=r"shape \(batch, 3\)"):
        as_indices(img, 256, (3,))
    with validation(False):
        assert as_indices(img, 16).dtype == torch.long  # values unchecked, conversion kept
    assert validation_enabled()


def test_check_int():
    assert check_int(3, "top_k", low=1) == 3
    with pytest.raises(TypeError, match="top_k must be an int, got 2.5"):
        check_int(2.5, "top_k", low=1)
    with pytest.raises(ValueError, match=r"n must lie in \[1, inf\], got 0"):
        check_int(0, "n", low=1)
    with pytest.raises(TypeError):
        check_int(True, "n")


# ------------------------------------------------------------------------------ batches


def test_minibatches_cover_an_epoch_once_and_convert():
    x = torch.arange(10, dtype=torch.uint8)
    y = torch.arange(10) * 10
    batches = list(Minibatches(x, y, batch_size=3, seed=1, dtype=torch.long))
    assert len(batches) == 3 and all(b[0].dtype == torch.long for b in batches)
    seen = torch.cat([b[0] for b in batches])
    assert len(set(seen.tolist())) == 9
    assert all(torch.equal(b[1], b[0] * 10) for b in batches)  # rows stay paired
    again = list(Minibatches(x, y, batch_size=3, seed=1, dtype=torch.long))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))  # seeded
    with pytest.raises(ValueError, match="differ in length"):
        Minibatches(x, y[:5], batch_size=2)


def test_random_windows_are_slices_of_the_text():
    ids = torch.arange(100)
    w = next(random_windows(ids, batch_size=8, length=5, seed=0))
    assert w.shape == (8, 5)
    assert torch.equal(w - w[:, :1], torch.arange(5).expand(8, 5))
    with pytest.raises(ValueError, match="at least 200"):
        next(random_windows(ids, 2, 200))


# ------------------------------------------------------------------------------ precision


@pytest.mark.parametrize(
    "capability, want",
    [((7, 5), torch.float16), ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)],
)
def test_autocast_dtype_by_compute_capability(monkeypatch, capability, want):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert autocast_dtype("cuda") == want
    assert autocast_dtype("cpu") is None


def test_a_scaled_step_equals_an_unscaled_one():
    """float16 steps scale the loss; unscaling before clipping must give the very same step."""
    data = _data(64, dims=3, k=2)
    models = [Independent(3, 2) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    sched = Schedule(steps=1, lr=0.1, grad_clip=0.01)  # clipping active: the order matters
    for model, scaler in zip(models, [None, torch.amp.GradScaler("cpu", init_scale=1024.0)]):
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        _step(_LossOf(model, _loss), opt, data, sched, "cpu", scaler)
    assert torch.allclose(models[0].logits, models[1].logits, atol=1e-6)


# --------------------------------------------------------------------------- torch.compile


def test_a_compiled_loss_trains_as_the_eager_one():
    """``Schedule.compile`` changes how the loss runs, not what it computes: the same seeds give
    the same losses and weights (to float32 round-off), the time-planned step count too."""
    from torch._dynamo.utils import counters

    data = _data()
    runs = {}
    for mode in (None, "default"):
        torch.manual_seed(0)
        model = Independent(6, 4)
        schedule = Schedule(steps=12, lr=0.05, log_every=1, compile=mode)
        counters.clear()
        hist = train(model, _loss, Minibatches(data, batch_size=128, seed=0), schedule)
        runs[mode] = (hist.train, model.logits.detach().clone())
        assert (counters["stats"]["unique_graphs"] > 0) == (mode is not None)  # it did compile
    assert len(runs["default"][0]) == 12
    torch.testing.assert_close(runs["default"][0], runs[None][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(runs["default"][1], runs[None][1], rtol=1e-5, atol=1e-5)
    timed = Schedule(steps=10**6, seconds=0.05, compile="default")
    assert 1 <= plan_steps(Independent(6, 4), _loss, [data[:128]], timed) < 10**6


def test_a_compiled_loss_still_validates_the_first_batch():
    bad = _data(n=128)
    bad[0, 0] = 9  # a class the 4-way model does not have
    with pytest.raises(ValueError):
        train(Independent(6, 4), _loss, [bad], Schedule(steps=2, compile="default"))


def test_an_unknown_compile_mode_is_refused():
    with pytest.raises(ValueError, match="compile must be"):
        Schedule(steps=1, compile="fastest")
