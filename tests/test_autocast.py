"""Every recipe trains under low-precision autocast, the path its steps take on a GPU.

On CUDA, :func:`arnb.train.autocast` runs the training steps in bfloat16 (float16 on older
cards); off CUDA it does nothing, so the CPU suite would never execute that path. Here it is
pointed at CPU bfloat16 autocast, under which linear layers, convolutions, matmuls and attention
return bfloat16: a model that mixes those outputs with float32 state, or computes a density in a
precision it cannot take, fails here instead of in scarce GPU time. oneDNN has no bfloat16 LSTM
on CPUs without bfloat16 instructions, so it is switched off and the LSTMs stay in float32.
"""

import json
import math

import pytest
import torch

import arnb.train
from arnb.chapters import RECIPES, load_all
from arnb.cli import main

load_all()
COUNTS_ONLY = {"ch02-ngram", "ngram-shakespeare-char", "pixelcnn-sampling-speed"}  # no training


def numbers(tree):
    if isinstance(tree, dict):
        for value in tree.values():
            yield from numbers(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from numbers(value)
    elif isinstance(tree, float):
        yield tree


@pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN")
@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_trains_under_bfloat16_autocast(name, tmp_path, monkeypatch):
    steps = []

    def cpu_bfloat16(device):
        steps.append(device)
        return torch.autocast("cpu", dtype=torch.bfloat16)

    monkeypatch.setattr(arnb.train, "autocast", cpu_bfloat16)
    with torch.backends.mkldnn.flags(enabled=False):
        assert main(["run", name, "--profile", "smoke", "--out", str(tmp_path)]) == 0
    assert bool(steps) != (name in COUNTS_ONLY)  # the patched path is the one that ran
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert all(math.isfinite(x) for x in numbers(record["metrics"])), record["metrics"]
