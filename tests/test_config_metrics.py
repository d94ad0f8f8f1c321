"""Profiles, device, seeding and unit conversions."""

import math

import pytest
import torch

import arnb
from arnb.config import ProfileError, get_profile, pick, seed_everything
from arnb.metrics import bits_per_dim, bits_to_nats, nats_to_bits, perplexity


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
