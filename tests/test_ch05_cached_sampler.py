"""Chapter 5: the cached PixelCNN sampler (kept features, Ramachandran et al. 2017).

It must draw exactly the images of the naive loop (one full forward pass per value) from the
same generator. The models are tiny and run in float64, so that a draw can only differ if the
sampler computes a different conditional, not because a sum was rounded differently.
"""

import pytest
import torch

from arnb.models.pixelcnn import GatedPixelCNN, PixelCNN, PixelCNNConfig


def tiny(channels=1, num_classes=2, num_labels=0, height=6, width=7, plain=False, **kw):
    torch.manual_seed(0)
    cfg = PixelCNNConfig(
        channels=channels,
        height=height,
        width=width,
        num_classes=num_classes,
        hidden=kw.pop("hidden", 6 if channels == 3 else 4),
        layers=kw.pop("layers", 2),
        first_kernel=kw.pop("first_kernel", 3),
        num_labels=num_labels,
        **kw,
    )
    model = (PixelCNN if plain else GatedPixelCNN)(cfg).double()
    with torch.no_grad():  # random biases too, so that no unit sits exactly at zero
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def draw(model, method, n=3, seed=3, **kw):
    g = torch.Generator().manual_seed(seed)
    x = model.sample(n, generator=g, method=method, **kw)
    return x, g.get_state()


VARIANTS = [  # (channels, num_classes, num_labels)
    (1, 2, 0),
    (1, 256, 0),
    (3, 4, 0),
    (3, 4, 3),
]


@pytest.mark.parametrize("channels,num_classes,num_labels", VARIANTS)
@pytest.mark.parametrize("with_prompt", [False, True], ids=["blank", "prompt"])
def test_cached_sampler_equals_naive_loop(channels, num_classes, num_labels, with_prompt):
    # dilations (1, 2): reach 4, so rows and columns are kept across more than one kernel
    model = tiny(channels, num_classes, num_labels, dilations=(1, 2))
    kw = {}
    if num_labels:
        kw["label"] = torch.tensor([0, 2, 1])
    if with_prompt:
        kw["prompt"] = torch.randint(
            num_classes, (3, channels, 2, 7), generator=torch.Generator().manual_seed(0)
        )
    naive, naive_state = draw(model, "naive", **kw)
    cached, cached_state = draw(model, "cached", **kw)
    assert torch.equal(naive, cached)
    # the same number of uniforms was taken from the generator
    assert torch.equal(naive_state, cached_state)
    if with_prompt:
        assert torch.equal(cached[:, :, :2], kw["prompt"])
    # not passing on trivial output: the images vary
    assert len(naive[:, :, 2:].unique()) > 1


@pytest.mark.parametrize(
    "sizes",
    [
        dict(first_kernel=7, kernel=5, dilations=(1, 3), height=5, width=4),  # reach > image
        dict(first_kernel=5, layers=3, dilations=(2, 1, 1), height=4, width=9),
        dict(height=1, width=5),  # a single row: no vertical context at all
        dict(height=5, width=1),  # a single column
    ],
    ids=["reach-beyond-image", "three-layers", "one-row", "one-column"],
)
def test_cached_sampler_kernels_and_shapes(sizes):
    model = tiny(1, 256, 0, **sizes)
    naive, _ = draw(model, "naive", n=2, seed=5)
    cached, _ = draw(model, "cached", n=2, seed=5)
    assert torch.equal(naive, cached)


def test_cached_sampler_one_image_and_prompt_of_every_row():
    model = tiny(3, 4, 3, height=4, width=4, dilations=(1, 2))
    for rows in range(5):  # a prompt of 0 .. all rows
        prompt = torch.randint(4, (3, rows, 4), generator=torch.Generator().manual_seed(rows))
        naive, _ = draw(model, "naive", n=1, prompt=prompt, label=2)
        cached, _ = draw(model, "cached", n=1, prompt=prompt, label=2)
        assert torch.equal(naive, cached), rows


def test_cached_sampler_equals_fast_sampler_in_float32():
    # in float32 the sums may round differently in the last bit; with a few hundred draws a
    # flipped draw is unlikely (probability ~1e-7 each), and the test seeds are fixed
    model = tiny(1, 256, 0, height=8, width=8, dilations=(1, 2)).float()
    fast, _ = draw(model, "fast", n=4)
    cached, _ = draw(model, "cached", n=4)
    assert torch.equal(fast, cached)


def test_cached_sampler_never_runs_the_whole_network(monkeypatch):
    model = tiny(1, 2, 0)

    def refuse(*args, **kwargs):
        raise AssertionError("the cached sampler ran a full forward pass")

    expected, _ = draw(model, "naive")
    monkeypatch.setattr(model, "logits_from_float", refuse)
    monkeypatch.setattr(model, "vertical_stack", refuse)
    monkeypatch.setattr(model, "horizontal_stack", refuse)
    cached, _ = draw(model, "cached")
    assert torch.equal(expected, cached)


def test_cached_sampler_global_generator():
    model = tiny(1, 2, 0)
    torch.manual_seed(11)
    naive = model.sample_naive(2)
    after_naive = torch.rand(3)
    torch.manual_seed(11)
    cached = model.sample_cached(2)
    assert torch.equal(naive, cached) and torch.equal(torch.rand(3), after_naive)


def test_method_argument_and_guards():
    model = tiny(1, 2, 0)
    a, _ = draw(model, "fast")
    b = model.sample(3, generator=torch.Generator().manual_seed(3))  # "fast" is the default
    c = model.sample(3, generator=torch.Generator().manual_seed(3), method="cached")
    assert torch.equal(a, b) and torch.equal(a, c)
    with pytest.raises(ValueError, match="method"):
        model.sample(2, method="quick")
    with pytest.raises(ValueError, match="CUDA"):
        model.sample_cached(2, cuda_graph=True)
    # the cached sampler checks its arguments as the others do
    with pytest.raises(ValueError, match="prompt"):
        model.sample_cached(2, prompt=torch.zeros(1, 3, 6, dtype=torch.long))
    with pytest.raises(ValueError, match="label"):
        model.sample_cached(2, label=1)


def test_plain_pixelcnn_cached_is_the_naive_loop():
    model = tiny(3, 4, 0, height=3, width=3, hidden=6, plain=True)
    naive, _ = draw(model, "naive")
    cached, _ = draw(model, "cached")
    assert torch.equal(naive, cached)
    assert model.sample_cached(2, cuda_graph=False).shape == (2, 3, 3, 3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graph_sampler_equals_eager_cached_on_gpu():
    model = tiny(3, 4, 3, height=6, width=7, dilations=(1, 2)).cuda()
    kw = dict(label=torch.tensor([0, 2, 1], device="cuda"))
    graphed, _ = draw(model, "cached", **kw)  # cuda_graph defaults to True on CUDA
    g = torch.Generator().manual_seed(3)
    eager = model.sample_cached(3, generator=g, cuda_graph=False, **kw)
    naive, _ = draw(model, "naive", **kw)
    assert torch.equal(graphed, eager) and torch.equal(naive, graphed)
