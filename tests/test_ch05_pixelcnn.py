"""Chapter 5: masked convolutions, PixelCNN and gated PixelCNN.

The models are tiny and run in float64, so that "exactly zero" and "exactly the same samples"
are tested without floating-point luck.
"""

import pytest
import torch

from arnb.models.pixelcnn import (
    GatedPixelCNN,
    PixelCNN,
    PixelCNNConfig,
    causal_mask,
    centre_channel_mask,
    raster_order,
    receptive_field,
    vertical_mask,
)
from arnb.testing import (
    all_configurations,
    assert_causal,
    assert_normalized,
    assert_sampler_matches,
    dependency_matrix,
)

VARIANTS = [  # (channels, num_classes, num_labels)
    (1, 2, 0),
    (1, 256, 0),
    (3, 4, 0),
    (3, 4, 3),
]


def tiny(gated: bool, channels=1, num_classes=2, num_labels=0, height=6, width=6, **kw):
    torch.manual_seed(0)
    cfg = PixelCNNConfig(
        channels=channels,
        height=height,
        width=width,
        num_classes=num_classes,
        hidden=kw.pop("hidden", 6),
        layers=kw.pop("layers", 2),
        first_kernel=kw.pop("first_kernel", 3),
        num_labels=num_labels,
        **kw,
    )
    model = (GatedPixelCNN if gated else PixelCNN)(cfg).double()
    # Random biases too, so that no unit sits exactly at zero.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


# -- masks ---------------------------------------------------------------------------------------


def test_spatial_masks_by_hand():
    a = causal_mask(1, 1, 3, "A")[0, 0]
    b = causal_mask(1, 1, 3, "B")[0, 0]
    assert torch.equal(a, torch.tensor([[1.0, 1, 1], [1, 0, 0], [0, 0, 0]]))
    assert torch.equal(b, torch.tensor([[1.0, 1, 1], [1, 1, 0], [0, 0, 0]]))
    v_first = vertical_mask(1, 1, 3, first=True)[0, 0]
    v = vertical_mask(1, 1, 3, first=False)[0, 0]
    assert torch.equal(v_first, torch.tensor([[1.0, 1, 1], [0, 0, 0], [0, 0, 0]]))
    assert torch.equal(v, torch.tensor([[1.0, 1, 1], [1, 1, 1], [0, 0, 0]]))


def test_colour_group_masks_by_hand():
    # rows: output R, G, B; columns: input R, G, B
    a = centre_channel_mask(3, 3, "A", groups=3)
    b = centre_channel_mask(3, 3, "B", groups=3)
    assert torch.equal(a, torch.tensor([[0.0, 0, 0], [1, 0, 0], [1, 1, 0]]))
    assert torch.equal(b, torch.tensor([[1.0, 0, 0], [1, 1, 0], [1, 1, 1]]))
    # 6 hidden channels: channel k belongs to group k % 3
    m = centre_channel_mask(3, 6, "A", groups=3)
    assert torch.equal(m[3], m[0]) and torch.equal(m[5], m[2])


def test_mask_rejects_bad_arguments():
    with pytest.raises(ValueError, match="mask_type"):
        causal_mask(1, 1, 3, "C")
    with pytest.raises(ValueError, match="odd"):
        causal_mask(1, 1, 4, "A")
    with pytest.raises(ValueError, match="divisible"):
        centre_channel_mask(3, 4, "B", groups=3)


# -- causality and the blind spot ------------------------------------------------------------------


@pytest.mark.parametrize("gated", [True, False], ids=["gated", "plain"])
@pytest.mark.parametrize("channels,num_classes,num_labels", VARIANTS)
def test_every_variant_is_causal(gated, channels, num_classes, num_labels):
    model = tiny(gated, channels, num_classes, num_labels, hidden=6 if channels == 3 else 4)
    cfg = model.config
    label = torch.tensor([1]) if num_labels else None
    x = torch.rand(channels, cfg.height, cfg.width, dtype=torch.float64) * 2 - 1

    def f(h):  # (1, C, H, W) -> (1, C*H*W, K') in the same flattening as the input
        return model.logits_from_float(h.double(), label).movedim(1, -1).reshape(1, cfg.dims, -1)

    dep = dependency_matrix(f, x)
    order = raster_order(channels, cfg.height, cfg.width)
    assert_causal(dep, order, order)  # later pixels and later channels: gradient exactly zero
    # ... and the model is not trivially causal: every conditional but the first sees something
    seen = dep.any(1)
    assert int((~seen).sum()) == 1 and not seen[order == 0].any()


def expected_field(cfg: PixelCNNConfig, i: int, j: int, c: int) -> torch.Tensor:
    """Gated PixelCNN: rows i-r..i-1 and columns j-r..j+r; row i, columns j-r..j-1; channels < c
    of pixel (i, j). ``r`` = the configured reach."""
    r = cfg.reach
    want = torch.zeros(cfg.channels, cfg.height, cfg.width, dtype=torch.bool)
    want[:, max(0, i - r) : i, max(0, j - r) : j + r + 1] = True
    want[:, i, max(0, j - r) : j] = True
    want[:c, i, j] = True
    return want


@pytest.mark.parametrize("channels", [1, 3])
def test_gated_pixelcnn_has_no_blind_spot(channels):
    model = tiny(True, channels, 4, hidden=6, height=10, width=11, dilations=(1, 2))
    cfg = model.config
    assert cfg.reach == 4
    for i, j, c in [(8, 5, 0), (8, 5, channels - 1), (2, 9, 0), (9, 0, channels - 1)]:
        field = receptive_field(model, i, j, c)
        # exactly the earlier pixels inside the receptive field: none missing, none extra
        assert torch.equal(field, expected_field(cfg, i, j, c)), (i, j, c)


def test_plain_pixelcnn_has_a_blind_spot():
    model = tiny(False, 1, 2, hidden=4, height=10, width=11, layers=3)
    cfg = model.config
    i, j, r = 8, 5, cfg.reach
    field = receptive_field(model, i, j)[0]
    box = torch.zeros_like(field)
    box[i - r : i, j - r : j + r + 1] = True
    box[i, j - r : j] = True
    blind = box & ~field
    assert blind.any(), "the plain PixelCNN should miss some earlier pixels inside its reach"
    # the blind spot lies above and to the right of the pixel
    rows, cols = blind.nonzero(as_tuple=True)
    assert (rows < i).all() and (cols > j).all()
    assert not (field & ~box).any()


# -- normalisation, log_prob, sampling ------------------------------------------------------------


@pytest.mark.parametrize("gated", [True, False], ids=["gated", "plain"])
def test_binary_3x3_sums_to_one(gated):
    model = tiny(gated, 1, 2, height=3, width=3)
    configs = all_configurations(9, 2).view(-1, 1, 3, 3)
    assert len(configs) == 512
    assert_normalized(model.log_prob, configs, atol=1e-10)


def test_colour_and_conditional_model_sums_to_one():
    model = tiny(True, 3, 3, num_labels=2, height=2, width=1)
    configs = all_configurations(6, 3).view(-1, 2, 1, 3).permute(0, 3, 1, 2).contiguous()
    for label in (0, 1):
        assert_normalized(lambda x, lab=label: model.log_prob(x, label=lab), configs, atol=1e-10)


@pytest.mark.parametrize("num_classes", [2, 256])
def test_log_prob_matches_torch_distributions(num_classes):
    model = tiny(True, 1, num_classes)
    x = torch.randint(num_classes, (3, 1, 6, 6))
    params = model(x)
    if num_classes == 2:
        assert params.shape == (3, 1, 6, 6)
        dist = torch.distributions.Bernoulli(logits=params)
        ref = dist.log_prob(x.double()).flatten(1).sum(1)
    else:
        assert params.shape == (3, 1, 6, 6, num_classes)
        ref = torch.distributions.Categorical(logits=params).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(model.log_prob(x), ref)


def test_sampler_matches_exact_probabilities():
    model = tiny(True, 1, 2, height=2, width=2, hidden=4)
    configs = all_configurations(4, 2).view(-1, 1, 2, 2)
    samples = model.sample(3000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        log_probs = model.log_prob(configs)
    assert_sampler_matches(samples.flatten(1), log_probs, configs.flatten(1))


@pytest.mark.parametrize("channels,num_classes,num_labels", VARIANTS)
def test_fast_sampler_equals_naive_loop(channels, num_classes, num_labels):
    # reach 4 < height - 1 and < width - 1: the fast sampler really crops rows and columns
    model = tiny(
        True,
        channels,
        num_classes,
        num_labels,
        height=6,
        width=7,
        dilations=(1, 2),
        hidden=6 if channels == 3 else 4,
    )
    assert model.config.reach == 4
    label = torch.tensor([0, 2, 1]) if num_labels else None
    naive = model.sample_naive(3, label=label, generator=torch.Generator().manual_seed(3))
    fast = model.sample_fast(3, label=label, generator=torch.Generator().manual_seed(3))
    assert torch.equal(naive, fast)
    assert naive.min() >= 0 and naive.max() < num_classes
    # the images are not constant (the test is not passing on trivial output)
    assert len(naive.unique()) > 1


@pytest.mark.parametrize("gated", [True, False], ids=["gated", "plain"])
def test_dropout_acts_only_while_training_and_keeps_causality(gated):
    model = tiny(gated, dropout=0.5)
    plain = tiny(gated)
    plain.load_state_dict(model.state_dict())  # same weights, no dropout
    x = torch.randint(2, (4, 1, 6, 6))
    model.train()
    torch.manual_seed(1)
    a = model.log_prob(x)
    torch.manual_seed(2)
    assert not torch.allclose(a, model.log_prob(x))  # a fresh mask on every call
    model.eval()
    assert torch.equal(model.log_prob(x), plain.eval().log_prob(x))

    # while training too, no output sees a later pixel: the mask is element-wise
    model.train()
    cfg = model.config
    h = torch.rand(1, cfg.height, cfg.width, dtype=torch.float64) * 2 - 1
    dep = dependency_matrix(
        lambda v: model.logits_from_float(v.double()).reshape(1, cfg.dims, -1), h
    )
    order = raster_order(1, cfg.height, cfg.width)
    assert_causal(dep, order, order)

    # every sampler switches dropout off (same images as the model without it) and leaves
    # the model in the mode it found it in
    want = plain.sample_naive(16, generator=torch.Generator().manual_seed(5))
    methods = ["naive", "fast", "cached"] if gated else ["naive"]
    for method in methods:
        model.train()
        got = model.sample(16, generator=torch.Generator().manual_seed(5), method=method)
        assert torch.equal(got, want), method
        assert model.training
    with pytest.raises(ValueError, match="dropout"):
        PixelCNNConfig(dropout=1.0)


def test_prompt_is_kept_and_both_samplers_complete_it_identically():
    model = tiny(True, 1, 2, height=6, width=6)
    prompt = torch.randint(2, (3, 1, 3, 6))
    naive = model.sample(
        3, prompt=prompt, generator=torch.Generator().manual_seed(1), method="naive"
    )
    fast = model.sample(3, prompt=prompt, generator=torch.Generator().manual_seed(1))
    assert torch.equal(naive, fast)
    assert torch.equal(fast[:, :, :3], prompt)
    single = model.sample(2, prompt=prompt[0], generator=torch.Generator().manual_seed(1))
    assert torch.equal(single[:, :, :3], prompt[:1].expand(2, -1, -1, -1))


def test_plain_pixelcnn_samples_in_range():
    model = tiny(False, 3, 4, hidden=6, height=3, width=3)
    x = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert x.shape == (5, 3, 3, 3) and x.dtype == torch.long and 0 <= x.min() and x.max() <= 3


# -- bad input -------------------------------------------------------------------------------------


def test_bad_images_get_clear_errors():
    model = tiny(True, 1, 256)
    good = torch.randint(256, (2, 1, 6, 6))
    with pytest.raises(TypeError, match="integer"):
        model.log_prob(good.float() / 255)
    for bad in (256, -1):
        x = good.clone()
        x[1, 0, 2, 3] = bad
        with pytest.raises(ValueError, match=r"values must lie in \[0, 255\]"):
            model.log_prob(x)
    with pytest.raises(ValueError, match="3 channels, the model expects 1"):
        model.log_prob(good.expand(-1, 3, -1, -1))
    with pytest.raises(ValueError, match="shape"):
        model.log_prob(good[:, 0])
    with pytest.raises(ValueError, match="shape"):
        model.log_prob(good[:, :, :5])
    with pytest.raises(TypeError, match="torch.Tensor"):
        model.log_prob(good.numpy())
    binary = tiny(True, 1, 2)
    with pytest.raises(ValueError, match=r"values must lie in \[0, 1\]"):
        binary.log_prob(torch.randint(256, (2, 1, 6, 6)))
    with pytest.raises(TypeError, match="integer"):
        binary(torch.ones(1, 1, 6, 6, dtype=torch.bool))


def test_bad_labels_prompts_and_configs_get_clear_errors():
    cond = tiny(True, 1, 2, num_labels=3)
    plain = tiny(True, 1, 2)
    x = torch.randint(2, (2, 1, 6, 6))
    with pytest.raises(ValueError, match="class-conditional: pass label"):
        cond.log_prob(x)
    with pytest.raises(ValueError, match="label values must lie"):
        cond.log_prob(x, label=torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        cond.log_prob(x, label=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="not class-conditional"):
        plain.log_prob(x, label=1)
    with pytest.raises(ValueError, match="prompt must have shape"):
        plain.sample(2, prompt=torch.zeros(2, 1, 3, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="prompt values"):
        plain.sample(2, prompt=torch.full((2, 1, 3, 6), 2))
    with pytest.raises(ValueError, match="n must"):
        plain.sample(0)
    with pytest.raises(ValueError, match="divisible"):
        PixelCNNConfig(channels=3, hidden=8)
    with pytest.raises(ValueError, match="one dilation per layer"):
        PixelCNNConfig(layers=2, dilations=(1, 2, 4))
    with pytest.raises(ValueError, match="num_classes"):
        PixelCNNConfig(num_classes=1)


def test_uint8_and_int32_images_give_the_same_answer_as_long():
    # a uint8 image with 256 levels: a range check done in uint8 would wrap 256 to 0
    model = tiny(True, 1, 256)
    x = torch.randint(16, 241, (3, 1, 6, 6))
    x[0, 0, 0, 0], x[1, 0, 0, 0] = 16, 240
    want = model.log_prob(x)
    torch.testing.assert_close(model.log_prob(x.to(torch.uint8)), want)
    torch.testing.assert_close(model.log_prob(x.to(torch.int32)), want)
    torch.testing.assert_close(model(x.to(torch.int16)), model(x))
    cond = tiny(True, 3, 4, num_labels=3)
    xc, label = torch.randint(4, (2, 3, 6, 6)), torch.tensor([2, 0])
    torch.testing.assert_close(
        cond.log_prob(xc.to(torch.uint8), label=label.to(torch.int32)),
        cond.log_prob(xc, label=label),
    )
    with pytest.raises(ValueError, match=r"values must lie in \[0, 3\], found range \[200, 200\]"):
        cond.log_prob(torch.full((1, 3, 6, 6), 200, dtype=torch.uint8), label=0)


@pytest.mark.parametrize("gated", [True, False], ids=["gated", "plain"])
def test_protocol_signature_dtype_and_empty_batch(gated):
    model = tiny(gated, 1, 2, height=3, width=3)
    x = torch.randint(2, (4, 1, 3, 3))
    assert model.log_prob(x).dtype == torch.float64
    assert model.float().log_prob(x).dtype == torch.float32
    assert model.log_prob(x[:0]).shape == (0,)
    # nll is the mean per dimension (pixel and channel), not per image
    torch.testing.assert_close(model.nll(x), -model.log_prob(x).mean() / 9)
    g = torch.Generator().manual_seed(0)
    with pytest.raises(TypeError):
        model.sample(2, None, g)  # everything after n is a keyword
    with pytest.raises(TypeError):
        model.log_prob(x, None)
    assert model.sample(2, length=9).shape == (2, 1, 3, 3)
    with pytest.raises(ValueError, match="length"):
        model.sample(2, length=5)
