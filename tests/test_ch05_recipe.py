"""The chapter-5 training recipe keeps the weights that score best on held-out training images."""

import dataclasses

import pytest
import torch

from arnb.config import Setup
from arnb.chapters import ch05_pixelcnn as recipe


def tiny_sizes(**run) -> recipe.Ch05Sizes:
    base = recipe.SIZES["smoke"]
    binary = dataclasses.replace(base.binary, eval_every=1, train_subset=48, valid=16, **run)
    return dataclasses.replace(base, binary=binary)


@pytest.mark.parametrize("lr, steps, ema", [(1.0, 10, None), (0.3, 8, 0.5)])
def test_fit_returns_the_weights_with_the_best_validation_score(lr, steps, ema):
    # a learning rate this high makes the validation score jump about, so (for these seeds)
    # the best weights are not the last ones, with and without weight averaging
    sizes = tiny_sizes(lr=lr, steps=steps, ema=ema)
    env = Setup(profile="smoke", device=torch.device("cpu"), seed=0)
    model, hist, _, info = recipe.fit("binary", env, sizes, progress=False)
    scores = [e["valid_nll_nats"] for e in hist.eval]
    assert info["selected_step"] == hist.eval_step[scores.index(min(scores))]
    assert info["selected_step"] < hist.eval_step[-1], (
        "test needs a run whose last step is not best"
    )
    # the validation images are the last `valid` of the training subset, unseen in training
    (xtr, _), _, _, _ = recipe.load_task("binary", sizes)
    assert info["train_images"] == len(xtr) - 16
    again = recipe.evaluate(model, xtr[-16:], batch=sizes.eval_batch)["nll_nats"]
    assert again == pytest.approx(min(scores), rel=1e-6)


def test_fit_rejects_a_validation_set_as_large_as_the_training_set():
    sizes = tiny_sizes(steps=2)
    sizes.binary.valid = 48
    env = Setup(profile="smoke", device=torch.device("cpu"), seed=0)
    with pytest.raises(ValueError, match="valid must be between 1 and 47"):
        recipe.fit("binary", env, sizes, progress=False)
