"""Profiles, device, seeding and unit conversions."""

import dataclasses
import importlib
import math

import pytest
import torch

import arnb
from arnb.config import ProfileError, get_profile, pick, seed_everything
from arnb.metrics import bits_per_dim, bits_to_nats, nats_to_bits, perplexity
from arnb.train import Schedule


def test_profile_from_environment(monkeypatch):
    monkeypatch.setenv("ARNB_PROFILE", "CPU ")
    assert get_profile() == "cpu"
    monkeypatch.delenv("ARNB_PROFILE")
    assert get_profile() == ("gpu" if torch.cuda.is_available() else "cpu")


def test_unknown_profile_is_a_clear_error(monkeypatch):
    with pytest.raises(
        ProfileError, match="unknown profile 'laptop'.*smoke, cpu, gpu.*ARNB_PROFILE"
    ):
        get_profile("laptop")
    monkeypatch.setenv("ARNB_PROFILE", "fast")
    with pytest.raises(ProfileError, match="'fast'"):
        arnb.setup(verbose=False)


def test_pick_sizes_per_profile():
    sizes = {"smoke": 1, "cpu": 2}
    assert pick(sizes, "cpu") == 2
    with pytest.raises(ProfileError, match="no sizes defined for profile 'gpu'"):
        pick(sizes, "gpu")


@dataclasses.dataclass
class _Net:
    hidden: int = 64
    depth: int = 2


@dataclasses.dataclass
class _Run:
    name: str
    model: _Net
    fit: Schedule


@dataclasses.dataclass
class _Sizes:
    runs: list
    eval_batch: int = 512


def test_describe_shows_models_whole_and_schedules_by_their_changes():
    fit = Schedule(steps=300, lr=0.01, batch_size=32, threads=1)
    sizes = _Sizes([_Run("small", _Net(), fit), _Run("wide", _Net(hidden=512), fit)])
    # Schedule's defaults (warmup, clipping, ...) are left out; _Net's are not
    assert arnb.describe(sizes, width=60).splitlines() == [
        "_Sizes:",
        "  runs:",
        "    - _Run(name='small', model=_Net(hidden=64, depth=2),",
        "        fit=Schedule(steps=300, lr=0.01, batch_size=32,",
        "        threads=1))",
        "    - _Run(name='wide', model=_Net(hidden=512, depth=2),",
        "        fit=Schedule(steps=300, lr=0.01, batch_size=32,",
        "        threads=1))",
        "  eval_batch: 512",
    ]
    one_line = arnb.describe(sizes, width=200).splitlines()
    assert one_line[2] == (
        "    - _Run(name='small', model=_Net(hidden=64, depth=2), "
        "fit=Schedule(steps=300, lr=0.01, batch_size=32, threads=1))"
    )
    assert one_line[-1] == "  eval_batch: 512"
    with pytest.raises(TypeError, match="sizes dataclass"):
        arnb.describe({"cpu": 1})


@pytest.mark.parametrize(
    "chapter",
    ["ch01_factorization", "ch02_markov_to_rnn", "ch03_continuous", "ch04_rnn_mdn", "ch06_gpt"],
)
def test_describe_fits_every_profile_of_the_chapters_in_80_columns(chapter):
    module = importlib.import_module(f"arnb.chapters.{chapter}")
    for sizes in module.SIZES.values():
        text = arnb.describe(sizes)
        assert max(len(line) for line in text.splitlines()) <= 80
        for f in dataclasses.fields(sizes):  # every field is named, none dropped
            assert f"  {f.name}:" in text


def test_seeding_makes_runs_repeatable():
    seed_everything(3)
    a = torch.randn(5)
    seed_everything(3)
    assert torch.equal(a, torch.randn(5))


def test_setup_record_has_what_a_reader_needs():
    env = arnb.setup(seed=1, profile="smoke", verbose=False)
    rec = env.record()
    for key in ("profile", "device", "torch", "python", "wall_time_s", "date_utc", "autocast"):
        assert key in rec
    assert rec["profile"] == "smoke" and rec["seed"] == 1
    assert rec["arnb"] == arnb.__version__ and rec["autocast"] == "none"
    # the tests run from a checkout: the record names its commit (40 hex digits)
    assert rec["git_commit"] is None or len(rec["git_commit"]) == 40
    assert isinstance(rec["git_dirty"], (bool, type(None)))


def test_setup_record_lists_the_data_files_read():
    from arnb.data import load_shakespeare
    from arnb.data.files import FILES_READ

    load_shakespeare()
    rec = arnb.setup(seed=0, profile="smoke", verbose=False).record()
    assert rec["data_sha256"] == dict(sorted(FILES_READ.items()))
    assert any(path.endswith("input.txt") for path in rec["data_sha256"])
    assert all(len(h) == 64 for h in rec["data_sha256"].values())


def test_conversions_against_hand_computed_values():
    assert nats_to_bits(math.log(2)) == pytest.approx(1.0)
    assert nats_to_bits(1.0) == pytest.approx(1.4426950408889634)
    assert bits_to_nats(8.0) == pytest.approx(8 * 0.6931471805599453)
    # a 28x28 image with total NLL 784 * ln 2 nats costs exactly 1 bit per pixel
    assert bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)
    # 80 nats over 784 binary pixels: 80 / (784 ln 2) = 0.14721... bits/dim
    assert bits_per_dim(80.0, 784) == pytest.approx(0.147214, abs=1e-6)
    assert perplexity(math.log(65)) == pytest.approx(65.0)
    assert float(perplexity(torch.tensor(0.0))) == 1.0
    with pytest.raises(ValueError, match="dims must be positive"):
        bits_per_dim(1.0, 0)
