"""The record of a run says what ran, where and on what: the precision the steps ran in (with
the GPU's compute capability faked), and a recipe's metrics.json carries the provenance (git
commit and state, UTC date, arnb version, sha256 of every data file read)."""

import hashlib
import json
import re
from datetime import datetime, timedelta, timezone

import pytest
import torch

import arnb
import arnb.config
from arnb.chapters import RECIPES, load_all, recipe
from arnb.cli import main
from arnb.config import Setup, print_record


@pytest.mark.parametrize(
    "capability, dtype", [((7, 5), "float16"), ((8, 0), "bfloat16"), ((9, 0), "bfloat16")]
)
def test_the_record_says_which_precision_a_gpu_trains_in(monkeypatch, capsys, capability, dtype):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(arnb.config, "device_name", lambda device: "a faked GPU")
    s = Setup(profile="gpu", device=torch.device("cuda", 0), seed=0)
    rec = s.record()
    assert rec["autocast"] == dtype and rec["device_name"] == "a faked GPU"
    print_record(s)
    assert re.search(rf"^ +autocast: {dtype}$", capsys.readouterr().out, re.M)


def test_on_the_cpu_the_record_says_no_autocast(capsys):
    print_record(arnb.setup(seed=0, profile="smoke", verbose=False))
    assert re.search(r"^ +autocast: none$", capsys.readouterr().out, re.M)


@pytest.fixture
def data_recipe():
    """A throw-away recipe that reads one data file."""
    load_all()
    name = "test-reads-shakespeare"

    @recipe(name, "reads Tiny Shakespeare, for the provenance test")
    def reads(setup, out):
        from arnb.data import load_shakespeare

        return {"characters": len(load_shakespeare())}

    yield name
    del RECIPES[name]


def test_a_recipes_metrics_carry_their_provenance(tmp_path, data_recipe, capsys):
    from arnb.data.files import fetch
    from arnb.data.text import TINY_SHAKESPEARE

    before = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    assert main(["run", data_recipe, "--profile", "smoke", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "metrics.json").read_text())
    assert result["recipe"] == data_recipe and result["metrics"]["characters"] == 1_115_394
    assert result["arnb"] == arnb.__version__ and result["profile"] == "smoke"
    assert result["command"].startswith("python -m arnb run test-reads-shakespeare")
    when = datetime.strptime(result["date_utc"], "%Y-%m-%d %H:%M").replace(tzinfo=timezone.utc)
    assert before <= when <= datetime.now(timezone.utc) + timedelta(minutes=1)
    # run from a checkout: the commit is 40 hex digits and the tree's state a bool
    assert result["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}", result["git_commit"])
    assert result["git_dirty"] in (True, False, None)
    # the digest recorded is the digest of the very file that was read
    path = fetch(TINY_SHAKESPEARE)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert result["data_sha256"][TINY_SHAKESPEARE.relpath] == digest
