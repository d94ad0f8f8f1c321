"""Conformance suite: every model exported from :mod:`arnb.models` against :mod:`arnb.protocol`.

A registry lists a tiny, seeded instance of each model with what the checks need to know about
it (the shape of one example, discrete or real, its conditioning, its autoregressive order).
The *same* checks then run on every entry:

- ``signature``: ``sample(n, *, prompt=None, generator=None, length=None, **kw)`` keyword-only
  after ``n``; ``log_prob(x, **cond)``, ``nll(x, **cond)``; one name for the training loss;
- ``sample``: shape, dtype and range of the samples, which the model scores finitely;
- ``length``: sequences take any ``length`` (prompt included), fixed-size models only ``None``;
- ``causal``: no conditional sees its own or a later dimension (gradients for real inputs,
  perturbations for discrete ones), and the last one does see the past;
- ``forward``: the parameters from ``forward`` give exactly ``log_prob`` (discrete heads);
- ``normalised``: discrete: ``sum_x p(x) = 1`` over all configurations; real: the density
  integrates to 1 on a grid (a joint of one or two steps, or one step given a prefix);
- ``sampler``: a chi-square test of many samples against the exact probabilities (for real
  data, of the grid's probability mass in coarse cells);
- ``prompt``: a prompt of one or of n samples comes back unchanged and the rest follows
  ``p(rest | prompt)`` (chi-square against the conditional, discrete models);
- ``batch``: the log-probability of a row does not depend on the other rows;
- ``empty``: a batch of 0 rows gives a ``(0,)`` result;
- ``float64``: after ``.double()`` the model computes in float64 and agrees with float32;
- ``determinism``: a seeded generator fixes the samples, and the global RNG is left alone;
- ``dtypes``: discrete inputs of any integer dtype give the same answer;
- ``bad_input``: floats for ids, ids out of range, NaN, a missing batch dimension, a bad or
  too long prompt: a clear ``TypeError``/``ValueError``;
- ``nll``: ``nll`` is the mean of ``-log_prob`` per scored dimension (padding excluded);
- ``sequence_nll``: models of one long text give ``-log_prob / T`` of a 1-D text as a float;
- ``padding``: NaN or 1e30 in masked-out padding changes nothing.

A model exported from :mod:`arnb.models` but missing from the registry fails
:func:`test_registry_lists_every_model`. A check that does not apply to an entry is skipped
with the reason written in the entry.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import arnb.models as models
from arnb.models import (
    AIQN,
    FVSBN,
    GPT,
    HMM,
    MADE,
    MDN,
    RNNMDN,
    AnyOrderConfig,
    AnyOrderNet,
    AutoregressiveMDN2D,
    CharRNN,
    ContextFreeMixture,
    GatedPixelCNN,
    GPTConfig,
    HandwritingSynthesis,
    HMMConfig,
    JointTable,
    MADEConfig,
    MarkovChain,
    MDNConfig,
    MSERegressor,
    NGramLM,
    PixelCNN,
    PixelCNNConfig,
    QuantileNet,
    RNNConfig,
    RNNMDNConfig,
    SynthesisConfig,
)
from arnb.models.pixelcnn import raster_order
from arnb.protocol import ARModel
from arnb.testing import (
    all_configurations,
    assert_causal,
    dependency_matrix,
    perturbation_dependency,
    sampler_p_value,
)
from arnb.validation import validation

ALPHA = 1e-3  # chi-square false-alarm rate of a correct sampler (seeded: deterministic)

# ---------------------------------------------------------------------------------- registry


def spread(model: nn.Module, std: float = 0.7, seed: int = 0) -> nn.Module:
    """Redraw every parameter from N(0, std^2): a default init is close to uniform, and a
    near-uniform model cannot tell a right sampler or conditional from a wrong one."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


def random_ids(shape: tuple[int, ...], num_classes: int, seed: int) -> torch.Tensor:
    return torch.randint(num_classes, shape, generator=torch.Generator().manual_seed(seed))


def strokes(n: int, t: int, seed: int) -> torch.Tensor:
    """``(n, t, 3)`` pen points: a real move and a pen bit in {0, 1}."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, t, 3, generator=g)
    x[..., 2] = (torch.rand(n, t, generator=g) < 0.3).float()
    return x


def stroke_mask(n: int, t: int) -> torch.Tensor:
    """Every other drawing is one point shorter: ``(n, t)`` float, 1 on real points."""
    mask = torch.ones(n, t)
    mask[1::2, t - 1 :] = 0.0
    return mask


@dataclass(frozen=True, eq=False)
class Grid:
    """Where a real-valued density is integrated: per flattened dimension of the integrated
    part, ``("real", low, high, step)`` (midpoint rule) or ``("bit",)`` (summed over {0, 1}).

    ``shape`` is the shape of the integrated part of one example; ``prefix`` (steps of a
    sequence, kept fixed) turns the integral into that of ``p(next step | prefix)``.
    """

    dims: tuple
    shape: tuple[int, ...]
    prefix: torch.Tensor | None = None
    coarse: int = 5  # coarse cells per real dimension for the sampler's chi-square


@dataclass(frozen=True, eq=False)
class Entry:
    """What the checks need to know about one model.

    ``shape``: one example (without the batch dimension); ``num_classes``: values of a discrete
    entry, None for real-valued data; ``cond(n)``: the conditioning of n rows, one shared value
    (enumeration, sampling); ``cond_mixed(n)``: n different values (batch independence);
    ``fixed_size``: True if only ``length=None`` is allowed, False if any length is, None if
    not checked; ``steps(model, x, c)``: the first c autoregressive steps of ``x (N, *shape)``
    in the form a prompt takes; ``in_order``/``out_order(model)``: position in the order of
    each flattened input entry / each output row of ``forward``; ``head``: how ``forward``'s
    output reads (``"categorical"`` logits ``(B, *shape, K)``, ``"bernoulli"`` ``(B, *shape)``,
    None: model-specific); ``point``: entries of x per scored dimension (3 for a pen point);
    ``prompt_steps``: the prompt's length in the prompt checks; ``grid``: where a real density
    is integrated; ``uses_context``: the last conditional must see the past (False for a
    context-free baseline); ``example(n, seed)``: data of the right kind when random values of
    ``shape`` are not; ``skip``: check name -> why it does not apply.
    """

    name: str
    cls: type
    build: Callable[[], nn.Module]
    shape: tuple[int, ...]
    num_classes: int | None = None
    cond: Callable[[int], dict] = lambda n: {}
    cond_mixed: Callable[[int], dict] | None = None
    fixed_size: bool | None = True
    prompt_steps: int = 1
    steps: Callable | None = None
    in_order: Callable | None = None
    out_order: Callable | None = None
    head: str | None = None
    grid: Grid | None = None
    point: int = 1
    uses_context: bool = True
    example: Callable[[int, int], torch.Tensor] | None = None
    skip: dict[str, str] = field(default_factory=dict)

    @property
    def discrete(self) -> bool:
        return self.num_classes is not None


def _binary_steps(model, x, c):
    return x[:, model.order[:c]]


def _image_steps(model, x, c):
    return x[:, :, :c]


def _ar2d_steps(model, x, c):
    return x[:, list(model.order)[:c]]


def _raster(model):
    cfg = model.config
    return raster_order(cfg.channels, cfg.height, cfg.width)


def _fit_ngram() -> NGramLM:
    ids = random_ids((60,), 3, seed=1)
    ids[::7] = 0  # some structure, so the counts are not flat
    return NGramLM(order=2, vocab_size=3).fit(ids)


def _joint_table() -> JointTable:
    data = random_ids((24, 4), 2, seed=2)
    data[:8] = torch.tensor([1, 0, 1, 1])  # one frequent pattern
    return JointTable(4, alpha=0.5, order=[2, 0, 3, 1]).fit(data)


def _stroke_time(n):
    return torch.arange(n).repeat_interleave(3)


TEXTS = ["ab", "ba ab", "b", "a b"]

# What the entries of one kind share.
BINARY_VECTOR = dict(
    shape=(4,),
    num_classes=2,
    prompt_steps=2,
    steps=_binary_steps,
    in_order=lambda m: m.rank,
    head="bernoulli",
)
SEQUENCE = dict(shape=(4,), num_classes=3, fixed_size=False, prompt_steps=2, head="categorical")
IMAGE = dict(steps=_image_steps, in_order=_raster)
REGRESSION = dict(  # p(y | x) of one real y given a context x of one feature
    shape=(),
    cond=lambda n: {"context": torch.full((n, 1), 0.3)},
    cond_mixed=lambda n: {"context": torch.linspace(-1, 1, n).unsqueeze(1)},
)
STROKES = dict(  # three pen points (dx, dy, pen); every other drawing one point shorter
    shape=(3, 3),
    fixed_size=False,
    in_order=lambda m: _stroke_time(3),
    out_order=lambda m: torch.arange(3),
    cond_mixed=lambda n: {"mask": stroke_mask(n, 3)},
    point=3,
    example=lambda n, seed: strokes(n, 3, seed),
)
PEN_POINT = (("real", -7.0, 7.0, 0.14),) * 2 + (("bit",),)  # the grid of one point
FIRST_POINT = torch.tensor([[0.5, -0.3, 0.0]])  # the prefix of the next point's density


def _pixelcnn(cls: type, **config) -> Callable[[], nn.Module]:
    """A builder of a one-layer PixelCNN of class ``cls`` with 3x3 kernels."""
    return lambda: spread(
        cls(PixelCNNConfig(layers=1, kernel=3, first_kernel=3, **config)), std=0.5
    )


REGISTRY: list[Entry] = [
    Entry(
        "FVSBN",
        FVSBN,
        lambda: spread(FVSBN(4, order=[2, 0, 3, 1])),
        **BINARY_VECTOR,
    ),
    Entry(
        "MADE",
        MADE,
        lambda: spread(MADE(MADEConfig(dims=4, hidden=(8,), order=[1, 3, 0, 2]))),
        **BINARY_VECTOR,
    ),
    Entry(
        "AnyOrderNet",
        AnyOrderNet,
        lambda: spread(
            AnyOrderNet(AnyOrderConfig(dims=4, hidden=(8,), order=[3, 1, 0, 2])), std=0.7
        ),
        **BINARY_VECTOR,
    ),
    Entry(
        "JointTable",
        JointTable,
        _joint_table,
        **BINARY_VECTOR,
    ),
    Entry(
        "MarkovChain",
        MarkovChain,
        lambda: MarkovChain(num_classes=3, length=4),
        shape=(4,),
        num_classes=3,
        fixed_size=True,  # built for one length (the fixture of the shared probes)
        prompt_steps=2,
        head="categorical",
    ),
    Entry(
        "NGramLM",
        NGramLM,
        _fit_ngram,
        **SEQUENCE,
    ),
    Entry(
        "HMM",
        HMM,
        lambda: HMM(HMMConfig(num_states=2, vocab_size=3, init_scale=1.5)),
        **SEQUENCE,
    ),
    Entry(
        "CharRNN",
        CharRNN,
        lambda: spread(CharRNN(RNNConfig(vocab_size=3, cell="lstm", embed=4, hidden=8, layers=1))),
        **SEQUENCE,
    ),
    Entry(
        "GPT",
        GPT,
        lambda: spread(
            GPT(GPTConfig(vocab_size=3, block_size=8, n_layer=1, n_head=2, n_embd=8)), std=0.5
        ),
        **SEQUENCE,
    ),
    Entry(
        "PixelCNN",
        PixelCNN,
        _pixelcnn(PixelCNN, channels=1, height=2, width=3, num_classes=3, hidden=8),
        shape=(1, 2, 3),
        num_classes=3,
        **IMAGE,
        head="categorical",
    ),
    Entry(
        "GatedPixelCNN",
        GatedPixelCNN,
        _pixelcnn(
            GatedPixelCNN, channels=2, height=2, width=2, num_classes=2, hidden=6, num_labels=2
        ),
        shape=(2, 2, 2),
        num_classes=2,
        cond=lambda n: {"label": torch.ones(n, dtype=torch.long)},
        cond_mixed=lambda n: {"label": torch.arange(n) % 2},
        **IMAGE,
        head="bernoulli",
    ),
    Entry(
        "AutoregressiveMDN2D",
        AutoregressiveMDN2D,
        lambda: AutoregressiveMDN2D(
            num_components=3, hidden=8, depth=1, order=(1, 0), min_scale=0.15
        ),
        shape=(2,),
        steps=_ar2d_steps,
        in_order=lambda m: torch.argsort(torch.tensor(m.order)),
        grid=Grid(dims=(("real", -7.0, 7.0, 0.14),) * 2, shape=(2,)),
    ),
    Entry(
        "MDN",
        MDN,
        lambda: MDN(MDNConfig(in_features=1, hidden=8, depth=1, num_components=3, min_scale=0.1)),
        **REGRESSION,
        grid=Grid(dims=(("real", -8.0, 8.0, 0.02),), shape=()),
        skip={
            "causal": "p(y | x) of one real y: a single conditional, no order to break",
            "prompt": "p(y | x) of one real y: nothing to prompt",
        },
    ),
    Entry(
        "QuantileNet",
        QuantileNet,
        lambda: QuantileNet(in_features=1, hidden=8, depth=1, n_cos=4),
        **REGRESSION,
        skip={
            **{
                k: "an implicit quantile network has no density: it only samples"
                for k in (
                    "causal",
                    "forward",
                    "normalised",
                    "sampler",
                    "batch",
                    "empty",
                    "float64",
                    "bad_input",
                    "nll",
                    "log_prob_signature",
                )
            },
            "one_loss_name": "no likelihood, so its training loss (pinball) is not an nll",
            "prompt": "p(y | x) of one real y: nothing to prompt",
        },
    ),
    Entry(
        "AIQN",
        AIQN,
        lambda: spread(AIQN(dims=2, hidden=8, depth=1, n_cos=4), std=0.5),
        shape=(2,),
        skip={
            **{
                k: "an autoregressive quantile network has no density: it only samples"
                for k in (
                    "normalised",
                    "sampler",
                    "batch",
                    "empty",
                    "float64",
                    "bad_input",
                    "nll",
                    "log_prob_signature",
                )
            },
        },
    ),
    Entry(
        "RNNMDN",
        RNNMDN,
        lambda: RNNMDN(RNNMDNConfig(hidden=8, components=2, sigma_floor=0.1)),
        **STROKES,
        grid=Grid(dims=PEN_POINT, shape=(1, 3), prefix=FIRST_POINT),
    ),
    Entry(
        "ContextFreeMixture",
        ContextFreeMixture,
        lambda: ContextFreeMixture(RNNMDNConfig(components=2, sigma_floor=0.1)),
        **STROKES,
        uses_context=False,  # the baseline: the same conditional whatever came before
        grid=Grid(dims=PEN_POINT, shape=(1, 3)),
    ),
    Entry(
        "HandwritingSynthesis",
        HandwritingSynthesis,
        lambda: HandwritingSynthesis(
            SynthesisConfig(
                alphabet="ab ", hidden=8, window_components=2, components=2, sigma_floor=0.1
            )
        ),
        **{
            **STROKES,
            "cond_mixed": lambda n: {
                "text": [TEXTS[i % len(TEXTS)] for i in range(n)],
                "mask": stroke_mask(n, 3),
            },
        },
        cond=lambda n: {"text": ["ab"] * n},
        grid=Grid(dims=PEN_POINT, shape=(1, 3), prefix=FIRST_POINT),
    ),
]

# Exported classes that are deliberately not checked, with the reason.
EXEMPT = {
    "MSERegressor": "a point predictor trained with squared error, not a generative model: it "
    "has neither log_prob nor sample (its Gaussian reading needs a sigma chosen outside)",
}

BY_NAME = {e.name: e for e in REGISTRY}
_MODELS: dict[str, nn.Module] = {}


def model_of(entry: Entry):
    """The entry's tiny model, built once per session (seeded) and in eval mode."""
    if entry.name not in _MODELS:
        with torch.random.fork_rng():  # seeded, without disturbing other tests' global RNG
            torch.manual_seed(0)
            model = entry.build()
        if hasattr(model, "eval"):
            model.eval()
        _MODELS[entry.name] = model
    return _MODELS[entry.name]


def example(entry: Entry, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` examples of the entry's shape (random values of the right kind)."""
    if entry.example is not None:
        return entry.example(n, seed)
    if entry.discrete:
        return random_ids((n, *entry.shape), entry.num_classes, seed)
    return torch.randn((n, *entry.shape), generator=torch.Generator().manual_seed(seed))


def steps_of(entry: Entry, model, x: torch.Tensor, c: int) -> torch.Tensor:
    """The first ``c`` autoregressive steps of ``x (N, *shape)``, in the form of a prompt."""
    return entry.steps(model, x, c) if entry.steps else x[:, :c]


def take(cond: dict, rows) -> dict:
    """The conditioning of the given rows (tensors and lists are indexed, the rest shared)."""
    out = {}
    for k, v in cond.items():
        if isinstance(v, torch.Tensor) and v.dim() > 0:
            out[k] = v[rows]
        elif isinstance(v, list):
            out[k] = [v[i] for i in rows]
        else:
            out[k] = v
    return out


def to_double(cond: dict) -> dict:
    return {
        k: v.double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v
        for k, v in cond.items()
    }


def length_kw(entry: Entry, length: int | None = None) -> dict:
    """Sequences are sampled at the example's length; fixed-size models take no length."""
    if entry.fixed_size is False:
        return {"length": length if length is not None else entry.shape[0]}
    return {}


def model_dtype(model) -> torch.dtype:
    """The floating dtype a model computes in (its first floating parameter or buffer)."""
    if hasattr(model, "dtype"):
        return model.dtype
    for t in [*model.parameters(), *model.buffers()]:
        if t.is_floating_point():
            return t.dtype
    return torch.get_default_dtype()


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def applies(entry: Entry, check: str) -> None:
    if check in entry.skip:
        pytest.skip(entry.skip[check])


def batched_log_prob(model, x: torch.Tensor, cond_fn, batch: int = 8192) -> torch.Tensor:
    parts = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = x[i : i + batch]
            parts.append(model.log_prob(xb, **cond_fn(len(xb))).double())
    return torch.cat(parts)


def configurations(entry: Entry) -> torch.Tensor:
    d = math.prod(entry.shape)
    return all_configurations(d, entry.num_classes).reshape(-1, *entry.shape)


params = pytest.mark.parametrize("entry", REGISTRY, ids=[e.name for e in REGISTRY])

# ------------------------------------------------------------------------- the registry itself


def test_registry_lists_every_model():
    """Every exported class with ``log_prob`` or ``sample`` has an entry (or a stated exemption)."""
    listed = {e.cls.__name__ for e in REGISTRY} | set(EXEMPT)
    exported = {
        name
        for name in models.__all__
        if isinstance(getattr(models, name), type)
        and (hasattr(getattr(models, name), "log_prob") or hasattr(getattr(models, name), "sample"))
    }
    missing = sorted(exported - listed)
    assert not missing, f"models exported from arnb.models without a conformance entry: {missing}"
    stale = sorted(n for n in listed if n not in models.__all__)
    assert not stale, f"registry entries for classes arnb.models no longer exports: {stale}"


def test_exemptions_are_not_generative_models():
    for name in EXEMPT:
        cls = getattr(models, name)
        assert not hasattr(cls, "log_prob") and not hasattr(cls, "sample"), (
            f"{name} is exempt as a non-generative model but has log_prob/sample: register it"
        )
    assert MSERegressor  # imported so a rename shows up here


@params
def test_factory_builds_the_class(entry):
    model = model_of(entry)
    assert type(model) is entry.cls
    assert isinstance(model, nn.Module), f"{entry.name} is not an nn.Module"


# ---------------------------------------------------------------------------------- signature


def _params(fn) -> list[inspect.Parameter]:
    return list(inspect.signature(fn).parameters.values())


def _accepts_keywords(fn, keys) -> list[str]:
    ps = {p.name: p for p in _params(fn)}
    if any(p.kind is p.VAR_KEYWORD for p in ps.values()):
        return []
    return [
        k
        for k in keys
        if k not in ps or ps[k].kind not in (ps[k].KEYWORD_ONLY, ps[k].POSITIONAL_OR_KEYWORD)
    ]


def _check_data_method(model, name: str, cond_keys) -> None:
    """``name(x, **cond)``: x first and positional, everything else keyword-only."""
    fn = getattr(model, name, None)
    assert callable(fn), f"no method {name}"
    ps = _params(fn)
    assert ps and ps[0].kind in (ps[0].POSITIONAL_ONLY, ps[0].POSITIONAL_OR_KEYWORD), (
        f"{name} must take x positionally first, got {inspect.signature(fn)}"
    )
    assert ps[0].name == "x", f"{name}'s data argument is called {ps[0].name!r}, not 'x'"
    late = [p.name for p in ps[1:] if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    assert not late, f"{name}{inspect.signature(fn)}: {late} must be keyword-only"
    assert "validate" not in {p.name for p in ps}, f"{name} has a private validate= bypass"
    missing = _accepts_keywords(fn, cond_keys)
    assert not missing, f"{name} does not take the conditioning {missing} by keyword"


def check_signature(entry: Entry, model) -> None:
    cond_keys = set(entry.cond(1)) | set((entry.cond_mixed or entry.cond)(1))
    # sample(n, *, prompt=None, generator=None, length=None, **kw)
    ps = _params(model.sample)
    assert ps and ps[0].name == "n" and ps[0].default is inspect.Parameter.empty, (
        f"sample must start with a required n, got sample{inspect.signature(model.sample)}"
    )
    positional = [p.name for p in ps[1:] if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    assert not positional, f"sample{inspect.signature(model.sample)}: {positional} keyword-only"
    by_name = {p.name: p for p in ps}
    for k in ("prompt", "generator", "length"):
        assert k in by_name, f"sample has no {k}= parameter"
        assert by_name[k].default is None, f"sample's {k} must default to None"
    missing = _accepts_keywords(model.sample, cond_keys - {"mask"})
    assert not missing, f"sample does not take the conditioning {missing} by keyword"
    # one name for the training loss
    if "one_loss_name" not in entry.skip:
        for old in ("loss", "nll_per_point", "generate"):
            assert not hasattr(model, old), f"{entry.name} still has {old}(): one name per concern"
    if "log_prob_signature" in entry.skip:
        return
    assert isinstance(model, ARModel), f"{entry.name} lacks log_prob / nll / sample"
    _check_data_method(model, "log_prob", cond_keys)
    _check_data_method(model, "nll", cond_keys)
    fwd = _params(model.forward)
    required = [
        p.name
        for p in fwd[1:]
        if p.default is p.empty and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    ]
    assert not required, f"forward requires {required} besides x: pass conditioning by keyword"
    missing = _accepts_keywords(model.forward, cond_keys - {"mask"})
    assert not missing, f"forward does not take the conditioning {missing} by keyword"


# ------------------------------------------------------------------------------------- sample


def check_sample(entry: Entry, model) -> None:
    n = 3
    x = model.sample(n, generator=gen(0), **length_kw(entry), **entry.cond(n))
    assert isinstance(x, torch.Tensor), f"sample returned {type(x).__name__}, not one tensor"
    assert tuple(x.shape) == (n, *entry.shape)
    if entry.discrete:
        assert x.dtype == torch.long, f"discrete samples must be long, got {x.dtype}"
        assert int(x.min()) >= 0 and int(x.max()) < entry.num_classes
    else:
        assert x.dtype == model_dtype(model), f"samples are {x.dtype}, not {model_dtype(model)}"
        assert torch.isfinite(x).all()
    if "log_prob_signature" not in entry.skip:
        with torch.no_grad():
            lp = model.log_prob(x, **entry.cond(n))
        assert lp.shape == (n,) and torch.isfinite(lp).all(), "samples must have finite log_prob"


def check_length(entry: Entry, model) -> None:
    cond = entry.cond(2)
    if entry.fixed_size is None:
        pytest.skip("the length this model accepts is its own choice")
    if entry.fixed_size:
        x = model.sample(2, generator=gen(0), length=None, **cond)
        assert tuple(x.shape) == (2, *entry.shape)
        with pytest.raises(ValueError, match="length"):
            model.sample(2, generator=gen(0), length=1000, **cond)
        return
    c = entry.prompt_steps
    prompt = steps_of(entry, model, example(entry, 2), c)
    for length in (c, c + 3):
        x = model.sample(2, generator=gen(0), length=length, **cond)
        assert x.shape[:2] == (2, length), "length is the length of the returned sequences"
        x = model.sample(2, prompt=prompt, generator=gen(0), length=length, **cond)
        assert x.shape[:2] == (2, length), "length counts the prompt too"


# ----------------------------------------------------------------------------------- causality


def check_causal(entry: Entry, model) -> None:
    d = math.prod(entry.shape)
    in_order = entry.in_order(model) if entry.in_order else torch.arange(d)
    out_order = entry.out_order(model) if entry.out_order else in_order
    d_out = len(out_order)
    if entry.discrete:

        def f(flat):
            out = model(flat.reshape(-1, *entry.shape), **entry.cond(len(flat)))
            return out.reshape(len(flat), d_out, -1)

        # atol: a batch of 1 and of K - 1 may round differently in the last bits
        x = example(entry, 1, seed=3)[0]
        dep = perturbation_dependency(f, x, entry.num_classes, atol=1e-5)
    else:

        def f(x):
            return model(x, **entry.cond(len(x))).reshape(len(x), d_out, -1)

        dep = dependency_matrix(f, example(entry, 1, seed=3)[0])
    assert_causal(dep, in_order, out_order)
    if entry.uses_context:
        last = int(torch.as_tensor(out_order).argmax())
        assert dep[last].any(), "the last conditional ignores every earlier dimension"


def check_forward(entry: Entry, model) -> None:
    if entry.head is None:
        pytest.skip("forward's parameters are model-specific (mixtures): see test_causal")
    x = example(entry, 5, seed=4)
    cond = entry.cond(5)
    with torch.no_grad():
        out = model(x, **cond).double()
        lp = model.log_prob(x, **cond).double()
    if entry.head == "bernoulli":
        assert out.shape == x.shape, f"Bernoulli logits {tuple(out.shape)} for x {tuple(x.shape)}"
        terms = -F.binary_cross_entropy_with_logits(out, x.double(), reduction="none")
    else:
        assert out.shape == (*x.shape, entry.num_classes), (
            f"forward gives {tuple(out.shape)}: the conditional of each of x's "
            f"{tuple(x.shape)} entries over {entry.num_classes} classes"
        )
        terms = F.log_softmax(out, -1).gather(-1, x.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(terms.flatten(1).sum(1), lp, atol=1e-4, rtol=1e-5)


# ------------------------------------------------------------------------------- normalisation


def grid_points(grid: Grid) -> tuple[torch.Tensor, float]:
    """Midpoints ``(G, D)`` of the grid's cells (bits: 0 and 1) and the volume of one cell."""
    axes, volume = [], 1.0
    for dim in grid.dims:
        if dim[0] == "bit":
            axes.append(torch.tensor([0.0, 1.0], dtype=torch.float64))
        else:
            _, lo, hi, step = dim
            m = round((hi - lo) / step)
            axes.append(lo + step * (torch.arange(m, dtype=torch.float64) + 0.5))
            volume *= step
    pts = torch.cartesian_prod(*axes) if len(axes) > 1 else axes[0].unsqueeze(1)
    return pts.float(), volume


_GRID_CACHE: dict[str, tuple] = {}


def grid_log_density(entry: Entry, model, pts: torch.Tensor) -> torch.Tensor:
    """``log p(point | prefix)`` at each grid point ``(G, D) -> (G,)`` float64 (computed once
    per model: the normalisation and the sampler checks share it)."""
    hit = _GRID_CACHE.get(entry.name)
    if hit is not None and hit[0] is model:
        return hit[1]
    out = _grid_log_density(entry, model, pts)
    _GRID_CACHE[entry.name] = (model, out)  # the model is kept, so its id is not reused
    return out


def _grid_log_density(entry: Entry, model, pts: torch.Tensor) -> torch.Tensor:
    grid = entry.grid
    x = pts.reshape(-1, *grid.shape)
    if grid.prefix is None:
        return batched_log_prob(model, x, entry.cond)
    prefix = grid.prefix.unsqueeze(0)
    joint = batched_log_prob(
        model, torch.cat([prefix.expand(len(x), *grid.prefix.shape), x], dim=1), entry.cond
    )
    return joint - batched_log_prob(model, prefix, entry.cond)


def check_normalised(entry: Entry, model) -> None:
    if entry.discrete:
        lp = batched_log_prob(model, configurations(entry), entry.cond)
        total = float(torch.logsumexp(lp, 0).exp())
        assert abs(total - 1) < 1e-4, f"probabilities of all configurations sum to {total:.6f}"
        return
    pts, volume = grid_points(entry.grid)
    total = float(grid_log_density(entry, model, pts).exp().sum() * volume)
    assert abs(total - 1) < 2e-3, f"the density integrates to {total:.6f} on the grid"


# ------------------------------------------------------------------------------------- sampler


def coarse_cells(grid: Grid, pts: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Cell id of each point ``(N, D)``: coarse bins per real dimension, both values of a bit;
    every point outside the grid's box goes to one last cell. Returns ids and the cell count."""
    ids = torch.zeros(len(pts), dtype=torch.long)
    outside = torch.zeros(len(pts), dtype=torch.bool)
    radix = 1
    for k, dim in enumerate(grid.dims):
        v = pts[:, k].double()
        if dim[0] == "bit":
            b, size = v.round().long().clamp(0, 1), 2
        else:
            _, lo, hi, _ = dim
            size = grid.coarse
            b = torch.floor((v - lo) / (hi - lo) * size).long()
            outside |= (b < 0) | (b >= size)
            b = b.clamp(0, size - 1)
        ids += b * radix
        radix *= size
    ids[outside] = radix
    return ids, radix + 1


def check_sampler(entry: Entry, model) -> None:
    if entry.discrete:
        n = 3000
        configs = configurations(entry)
        lp = batched_log_prob(model, configs, entry.cond)
        with torch.no_grad():
            x = model.sample(n, generator=gen(1), **length_kw(entry), **entry.cond(n))
        p = sampler_p_value(x.reshape(n, -1).cpu(), lp, configs.reshape(len(configs), -1))
        assert p > ALPHA, f"samples do not follow log_prob (chi-square p = {p:.2e})"
        return
    grid, n = entry.grid, 4000
    pts, volume = grid_points(grid)
    mass = grid_log_density(entry, model, pts).exp() * volume
    cell, cells = coarse_cells(grid, pts)
    expected = torch.zeros(cells, dtype=torch.float64).index_add_(0, cell, mass)
    expected[-1] = max(0.0, 1.0 - float(expected[:-1].sum()))  # outside the box
    kw = dict(entry.cond(n))
    if grid.prefix is not None:
        kw["prompt"] = grid.prefix
    c = 0 if grid.prefix is None else grid.prefix.shape[0]
    if entry.fixed_size is False:
        kw["length"] = c + grid.shape[0]
    with torch.no_grad():
        x = model.sample(n, generator=gen(1), **kw)
    drawn = x[:, c:] if grid.prefix is not None else x
    ids, _ = coarse_cells(grid, drawn.reshape(n, -1).cpu())
    p = sampler_p_value(
        ids.unsqueeze(1), expected.clamp_min(1e-300).log(), torch.arange(cells).unsqueeze(1)
    )
    assert p > ALPHA, f"samples do not follow the density (binned chi-square p = {p:.2e})"


# -------------------------------------------------------------------------------------- prompt


def check_prompt(entry: Entry, model) -> None:
    c, n = entry.prompt_steps, 3
    prompts = steps_of(entry, model, example(entry, n, seed=5), c)
    kw = {**length_kw(entry), **entry.cond(n)}
    with torch.no_grad():
        x = model.sample(n, prompt=prompts, generator=gen(2), **kw)
        assert torch.equal(steps_of(entry, model, x, c), prompts), "a prompt of n samples changed"
        x = model.sample(n, prompt=prompts[0], generator=gen(2), **kw)
    assert torch.equal(steps_of(entry, model, x, c), prompts[:1].expand_as(prompts)), (
        "a prompt of one sample changed"
    )
    if not entry.discrete or "sampler" in entry.skip:
        return  # real-valued prompts: the grid's prefix checks p(next | prompt)
    # the rest must follow p(rest | prompt): chi-square against the enumerated conditional
    configs = configurations(entry)
    keep = (steps_of(entry, model, configs, c) == prompts[0]).flatten(1).all(1)
    configs = configs[keep]
    lp = batched_log_prob(model, configs, entry.cond)
    m = 2000
    with torch.no_grad():
        x = model.sample(
            m, prompt=prompts[0], generator=gen(3), **length_kw(entry), **entry.cond(m)
        )
    p = sampler_p_value(x.reshape(m, -1).cpu(), lp, configs.reshape(len(configs), -1))
    assert p > ALPHA, f"samples after the prompt do not follow p(rest | prompt) (p = {p:.2e})"


# ------------------------------------------------------------------------ batches and dtypes


def check_batch(entry: Entry, model) -> None:
    n = 4
    x = example(entry, n, seed=6)
    cond = (entry.cond_mixed or entry.cond)(n)
    with torch.no_grad():
        lp = model.log_prob(x, **cond)
        assert lp.shape == (n,)
        alone = torch.cat([model.log_prob(x[i : i + 1], **take(cond, [i])) for i in range(n)])
        rev = list(range(n))[::-1]
        flipped = model.log_prob(x[rev], **take(cond, rev))
    torch.testing.assert_close(alone, lp, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(flipped, lp[rev], atol=1e-4, rtol=1e-5)


def check_empty(entry: Entry, model) -> None:
    x = example(entry, 1)[:0]
    with torch.no_grad():
        lp = model.log_prob(x, **entry.cond(0))
    assert lp.shape == (0,), f"log_prob of an empty batch has shape {tuple(lp.shape)}"


def check_float64(entry: Entry, model) -> None:
    x = example(entry, 4, seed=7)
    cond = (entry.cond_mixed or entry.cond)(4)
    with torch.no_grad():
        lp32 = model.log_prob(x, **cond)
        want = model_dtype(model)
        assert lp32.dtype == want, f"log_prob is {lp32.dtype}, the model computes in {want}"
        m64 = copy.deepcopy(model).double()
        x64 = x if entry.discrete else x.double()
        lp64 = m64.log_prob(x64, **to_double(cond))
    assert lp64.dtype == torch.float64, f"after .double() log_prob is {lp64.dtype}"
    torch.testing.assert_close(lp64, lp32.double(), atol=1e-3, rtol=1e-4)
    if not entry.discrete:
        with torch.no_grad():
            s = m64.sample(2, generator=gen(0), **length_kw(entry), **to_double(entry.cond(2)))
        assert s.dtype == torch.float64, f"a float64 model samples {s.dtype}"


def check_determinism(entry: Entry, model) -> None:
    n = 20
    kw = {**length_kw(entry), **entry.cond(n)}
    state = torch.get_rng_state()
    with torch.no_grad():
        a = model.sample(n, generator=gen(11), **kw)
        b = model.sample(n, generator=gen(11), **kw)
        c = model.sample(n, generator=gen(12), **kw)
    assert torch.equal(a, b), "the same seeded generator gave different samples"
    assert not torch.equal(a, c), "different seeds gave the same samples"
    assert torch.equal(torch.get_rng_state(), state), "sampling drew from the global RNG"


def check_dtypes(entry: Entry, model) -> None:
    if not entry.discrete:
        pytest.skip("real-valued data")
    x = example(entry, 4, seed=8)
    cond = entry.cond(4)
    with torch.no_grad():
        want = model.log_prob(x, **cond)
        for dtype in (torch.int32, torch.int16, torch.uint8):
            got = model.log_prob(x.to(dtype), **cond)
            torch.testing.assert_close(got, want, msg=lambda m, d=dtype: f"{d}: {m}")


def check_bad_input(entry: Entry, model) -> None:
    x = example(entry, 2, seed=9)
    cond = entry.cond(2)
    with validation(True), torch.no_grad():
        if entry.discrete:
            with pytest.raises(TypeError, match="dtype|integer"):
                model.log_prob(x.float(), **cond)
            bad = x.clone()
            bad.view(-1)[-1] = entry.num_classes
            with pytest.raises(ValueError, match=rf"\[0, {entry.num_classes - 1}\]"):
                model.log_prob(bad, **cond)
            bad.view(-1)[-1] = -1
            with pytest.raises(ValueError, match=rf"\[0, {entry.num_classes - 1}\]"):
                model.log_prob(bad, **cond)
        else:
            bad = x.clone()
            bad.view(-1)[0] = float("nan")
            with pytest.raises(ValueError, match="finite|NaN|nan"):
                model.log_prob(bad, **cond)
        with pytest.raises(ValueError, match="shape|dimension|batch"):
            model.log_prob(x[0], **entry.cond(1))
        if "prompt" in entry.skip:
            return
        kw = {**length_kw(entry), **entry.cond(2)}
        prompt = steps_of(entry, model, x, entry.prompt_steps)[0]
        bad = prompt.clone()
        if entry.discrete:
            bad.view(-1)[0] = entry.num_classes
            with pytest.raises(ValueError, match="prompt"):
                model.sample(2, prompt=bad, generator=gen(0), **kw)
            with pytest.raises((TypeError, ValueError), match="prompt"):
                model.sample(2, prompt=prompt.double() + 0.7, generator=gen(0), **kw)
        else:
            bad.view(-1)[0] = float("nan")
            with pytest.raises(ValueError, match="prompt"):
                model.sample(2, prompt=bad, generator=gen(0), **kw)
        if entry.fixed_size is False:  # a prompt longer than the sequences asked for
            with pytest.raises(ValueError, match="prompt"):
                model.sample(2, prompt=x[0], generator=gen(0), length=x.shape[1] - 1, **cond)


def check_nll(entry: Entry, model) -> None:
    x = example(entry, 4, seed=10)
    cond = (entry.cond_mixed or entry.cond)(4)
    with torch.no_grad():
        lp = model.log_prob(x, **cond)
        loss = model.nll(x, **cond)
    count = cond["mask"].sum() if "mask" in cond else x.numel() / entry.point
    assert loss.dim() == 0
    torch.testing.assert_close(loss.double(), (-lp.double().sum() / count).double())


def check_sequence_nll(entry: Entry, model) -> None:
    if not (entry.discrete and entry.fixed_size is False):
        pytest.skip("only models of one long text (sequences of any length) have sequence_nll")
    ids = random_ids((7,), entry.num_classes, seed=12)
    with torch.no_grad():
        got = model.sequence_nll(ids)
        want = -float(model.log_prob(ids.unsqueeze(0))[0]) / len(ids)
    assert isinstance(got, float), f"sequence_nll returns {type(got).__name__}, not a float"
    assert got == pytest.approx(want, abs=1e-5), "sequence_nll is not -log_prob per symbol"


def check_padding(entry: Entry, model) -> None:
    if "mask" not in (entry.cond_mixed or entry.cond)(2):
        pytest.skip("no padding: every example has the same length")
    x = example(entry, 2, seed=11)
    cond = (entry.cond_mixed or entry.cond)(2)
    real = int(cond["mask"][1].sum())
    with torch.no_grad():
        want = model.log_prob(
            x[1:2, :real], **take({k: v for k, v in cond.items() if k != "mask"}, [1])
        )
        for junk in (float("nan"), 1e30):
            bad = x.clone()
            bad[1, real:, :2] = junk
            lp = model.log_prob(bad, **cond)
            assert torch.isfinite(lp).all(), f"{junk} in the padding leaks into log_prob"
            torch.testing.assert_close(lp[1:], want, atol=1e-4, rtol=1e-5)
            assert torch.isfinite(model.nll(bad, **cond)), f"{junk} in the padding leaks into nll"


# ------------------------------------------------------------------------ the suite, per model

CHECKS = {
    "signature": check_signature,
    "sample": check_sample,
    "length": check_length,
    "causal": check_causal,
    "forward": check_forward,
    "normalised": check_normalised,
    "sampler": check_sampler,
    "prompt": check_prompt,
    "batch": check_batch,
    "empty": check_empty,
    "float64": check_float64,
    "determinism": check_determinism,
    "dtypes": check_dtypes,
    "bad_input": check_bad_input,
    "nll": check_nll,
    "sequence_nll": check_sequence_nll,
    "padding": check_padding,
}


@pytest.mark.parametrize("check", list(CHECKS))
@params
def test_conformance(entry, check):
    applies(entry, check)
    CHECKS[check](entry, model_of(entry))


# ---------------------------------------------------- the checks fail on deliberately broken models


class Mutant(nn.Module):
    """A registry model passed through unchanged; subclasses break one thing."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.inner, name)

    def forward(self, x, **cond):
        return self.inner(x, **cond)

    def log_prob(self, x, **cond):
        return self.inner.log_prob(x, **cond)

    def nll(self, x, **cond):
        return self.inner.nll(x, **cond)

    def sample(self, n, *, prompt=None, generator=None, length=None, **kw):
        return self.inner.sample(n, prompt=prompt, generator=generator, length=length, **kw)


class PositionalSample(Mutant):
    def sample(self, n, prompt=None, generator=None, length=None, **kw):
        return super().sample(n, prompt=prompt, generator=generator, length=length, **kw)


class FirstSymbolFree(Mutant):  # GPT's old convention: x_0 conditions, is never scored
    def log_prob(self, x, **cond):
        return self.inner.log_prob(x, **cond) - self.inner.log_prob(x[:, :1], **cond)


class Unnormalised(Mutant):
    def log_prob(self, x, **cond):
        return self.inner.log_prob(x, **cond) + 0.05 * x.shape[1]  # grows with each step


class Leaky(Mutant):  # each conditional peeks at the next step
    def forward(self, x, **cond):
        out = self.inner(x, **cond)
        nxt = x.roll(-1, dims=1).to(out.dtype)
        nxt = nxt.flatten(2).mean(-1) if nxt.dim() > 2 else nxt  # (B, T)
        return out + nxt.reshape(*nxt.shape, *[1] * (out.dim() - 2))


class UniformSampler(Mutant):
    def sample(self, n, *, prompt=None, generator=None, length=None, **kw):
        x = self.inner.sample(n, prompt=prompt, generator=generator, length=length, **kw)
        return torch.randint(self.inner_classes, x.shape, generator=generator)


class ShiftedSampler(Mutant):
    def sample(self, n, *, prompt=None, generator=None, length=None, **kw):
        x = self.inner.sample(n, prompt=prompt, generator=generator, length=length, **kw)
        c = 0 if prompt is None else torch.as_tensor(prompt).shape[-2]
        x[:, c:, :2] += 0.3  # the new points only: the prompt stays
        return x


class PromptIgnored(Mutant):  # keeps the prompt but draws the rest as if there were none
    def sample(self, n, *, prompt=None, generator=None, length=None, **kw):
        x = self.inner.sample(n, generator=generator, length=length, **kw)
        if prompt is not None:
            x[:, : torch.as_tensor(prompt).shape[-1]] = torch.as_tensor(prompt)
        return x


class BatchCoupled(Mutant):
    def log_prob(self, x, **cond):
        lp = self.inner.log_prob(x, **cond)
        return lp + 0.01 * lp.mean()


class Float32Only(Mutant):
    def log_prob(self, x, **cond):
        return self.inner.log_prob(x, **cond).float()


class IgnoresGenerator(Mutant):
    def sample(self, n, *, prompt=None, generator=None, length=None, **kw):
        return self.inner.sample(n, prompt=prompt, generator=None, length=length, **kw)


class ClampsInput(Mutant):  # silently "repairs" bad ids instead of refusing them
    def log_prob(self, x, **cond):
        return self.inner.log_prob(x.long().clamp(0, self.inner_classes - 1), **cond)


class NllPerSequence(Mutant):
    def nll(self, x, **cond):
        return -self.inner.log_prob(x, **cond).mean()


class PaddingTimesZero(Mutant):  # "lp * mask" lets NaN padding through: NaN * 0 = NaN
    def log_prob(self, x, **cond):
        return self.inner.log_prob(x, **cond) + 0.0 * x.flatten(1).sum(1)


class SequenceNllSkipsFirst(Mutant):
    def sequence_nll(self, ids):
        return -float(self.inner.log_prob(ids[None]) - self.inner.log_prob(ids[None, :1])) / (
            len(ids) - 1
        )


Failed = pytest.fail.Exception
MUTANTS = [
    ("signature", "CharRNN", PositionalSample, AssertionError),
    ("normalised", "CharRNN", FirstSymbolFree, AssertionError),
    ("normalised", "PixelCNN", Unnormalised, AssertionError),
    ("normalised", "AutoregressiveMDN2D", Unnormalised, AssertionError),
    ("normalised", "RNNMDN", Unnormalised, AssertionError),
    ("causal", "CharRNN", Leaky, AssertionError),
    ("causal", "RNNMDN", Leaky, AssertionError),
    ("causal", "AIQN", Leaky, AssertionError),
    ("sampler", "CharRNN", UniformSampler, AssertionError),
    ("sampler", "RNNMDN", ShiftedSampler, AssertionError),
    ("prompt", "CharRNN", PromptIgnored, AssertionError),
    ("batch", "GPT", BatchCoupled, AssertionError),
    ("float64", "HMM", Float32Only, AssertionError),
    ("determinism", "MarkovChain", IgnoresGenerator, AssertionError),
    ("bad_input", "NGramLM", ClampsInput, Failed),
    ("nll", "FVSBN", NllPerSequence, AssertionError),
    ("sequence_nll", "HMM", SequenceNllSkipsFirst, AssertionError),
    ("padding", "RNNMDN", PaddingTimesZero, AssertionError),
]


@pytest.mark.parametrize(
    "check, name, mutant, error", MUTANTS, ids=[f"{c}-{n}-{m.__name__}" for c, n, m, _ in MUTANTS]
)
def test_checks_catch_broken_models(check, name, mutant, error):
    """Each check must fail on a model broken in the way it looks for: a check that cannot
    fail proves nothing."""
    entry = BY_NAME[name]
    broken = mutant(model_of(entry))
    broken.inner_classes = entry.num_classes
    with pytest.raises(error):
        CHECKS[check](entry, broken)
