"""Progress bars read right when they are over: a loop stopped by its time budget ends as a
complete bar of the steps it ran (the notebook widget too), descriptions fit beside the bar, and
a bar that stays prints one plain line for readers without JavaScript."""

import re

import pytest
from test_train import Independent, _data, _loss
from tqdm.notebook import tqdm as notebook_tqdm
from tqdm.std import tqdm as text_tqdm

import arnb.train as train_module
from arnb.train import DESC_WIDTH, Progress, Schedule, _Readable, progress, train


class NotebookProgress(_Readable, notebook_tqdm):
    """The widget kind a Jupyter kernel gets from ``tqdm.auto``."""


class TextProgress(_Readable, text_tqdm):
    """The text kind a terminal or a log file gets."""


@pytest.fixture
def bars(monkeypatch):
    """Every bar :func:`train` makes, kept for inspection."""
    made = []

    class Kept(Progress):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(train_module, "Progress", Kept)
    return made


def test_a_time_limited_run_ends_as_a_complete_bar_and_prints_one_line(bars, capsys):
    hist = train(
        Independent(2, 2),
        _loss,
        [_data(8, dims=2, k=2)],
        Schedule(steps=10**6, time_limit=0.3, log_every=1),
        desc="time-limited",
    )
    (bar,) = bars
    ran = hist.step[-1] + 1
    assert 1 <= ran < 10**6
    assert bar.n == bar.total == ran  # not n of 1,000,000
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(lines) == 1
    assert re.fullmatch(
        rf"time-limited: {ran:,} steps in [0-9.]+ s, loss {hist.train[-1]:.4f}", lines[0]
    ), lines[0]


def test_the_line_names_the_selected_evaluation(bars, capsys):
    scores = iter([3.0, 1.0, 2.0, 5.0])
    train(
        Independent(2, 2),
        _loss,
        [_data(8, dims=2, k=2)],
        Schedule(steps=4, eval_every=1),
        eval_fn=lambda m: {"val": next(scores)},
        select="val",
        desc="selected",
    )
    line = capsys.readouterr().out.strip()
    assert line.startswith("selected: 4 steps in ") and line.endswith(
        "best val 1.0000 at step 2"
    ), line


def test_no_line_when_progress_is_off(capsys):
    train(Independent(2, 2), _loss, [_data(8, dims=2, k=2)], Schedule(steps=2), progress=False)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("kind", [NotebookProgress, TextProgress])
def test_finish_completes_the_bar_at_the_steps_run(kind, capsys):
    bar = kind(total=1000, desc="stopped early", unit="step")
    bar.update(37)
    bar.finish()
    assert bar.n == bar.total == 37
    if kind is NotebookProgress:
        shown = bar.container.children[1]  # the widget's own bar
        assert shown.value == shown.max == 37 and shown.bar_style == "success"
    assert capsys.readouterr().out.splitlines()[-1].startswith("stopped early: 37 steps in ")


@pytest.mark.parametrize("kind", [NotebookProgress, TextProgress])
def test_long_descriptions_are_cut_and_the_line_keeps_them_whole(kind, capsys):
    label = "a description far too long for the bar"
    bar = kind(range(3), desc=label)
    assert len(bar.desc) <= DESC_WIDTH and bar.desc.endswith("…")
    assert list(bar) == [0, 1, 2]  # exhausting an iterable closes the bar
    assert capsys.readouterr().out.splitlines()[-1].startswith(f"{label}: 3 iterations in ")


def test_transient_and_disabled_bars_print_nothing(capsys):
    list(progress(range(3), desc="sampling", leave=False))
    list(progress(range(3), desc="quiet", disable=True))
    assert capsys.readouterr().out == ""


def test_the_line_is_printed_once(capsys):
    bar = progress(total=2, desc="once")
    bar.update(2)
    bar.close()
    bar.close()
    del bar
    assert capsys.readouterr().out.count("once: 2 iterations") == 1


def test_a_bar_closed_short_of_its_total_is_not_shown_as_complete(capsys):
    bar = NotebookProgress(total=10, desc="fails")
    bar.update(3)
    bar.close()  # closed without finish(), as after an exception: 3 of 10 stays incomplete
    assert bar.container.children[1].bar_style == "danger" and bar.total == 10
    assert "iterations in" not in capsys.readouterr().out  # and no line that reads as done


def test_the_samplers_bars_end_with_one_plain_line(capsys):
    """A sampler's bar stays readable without JavaScript: one line when it is done."""
    import torch

    from arnb.models import GatedPixelCNN
    from arnb.models.pixelcnn import PixelCNNConfig
    from arnb.sampling import ancestral_sample

    torch.manual_seed(0)
    model = GatedPixelCNN(
        PixelCNNConfig(height=3, width=3, num_classes=2, hidden=4, layers=1, dilations=(1,))
    )
    capsys.readouterr()
    for method in ("naive", "fast", "cached"):
        model.sample(2, method=method, progress=True)
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"{method} sampling"), (method, lines)
    x = torch.zeros(2, 4, dtype=torch.long)
    ancestral_sample(lambda x, i: torch.zeros(len(x), 3), x, progress=True)
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("sampling: 4 positions in")
