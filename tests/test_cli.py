"""The command line regenerates a recipe's figures without Jupyter."""

import json

import pytest

from arnb.chapters import RECIPES, load_all, recipe
from arnb.cli import main


def test_run_writes_metrics_and_figures(tmp_path, capsys):
    assert main(["run", "markov-chain", "--profile", "smoke", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "metrics.json").read_text())
    assert result["profile"] == "smoke" and result["recipe"] == "markov-chain"
    m = result["metrics"]
    # the fitted chain must come close to the chain that generated the data
    assert abs(m["fitted_nll_nats"] - m["true_model_nll_nats"]) < 0.1
    assert (tmp_path / "loss.png").stat().st_size > 1000


def test_list_and_unknown_recipe(capsys):
    assert main(["list"]) == 0
    assert "markov-chain" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["run", "no-such-recipe"])
    assert "unknown recipe 'no-such-recipe'" in capsys.readouterr().err


def test_recipe_names_are_unique():
    load_all()
    with pytest.raises(ValueError, match="registered twice"):
        recipe("markov-chain", "again")(lambda s, o: {})
    assert "markov-chain" in RECIPES
