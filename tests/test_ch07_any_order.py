"""Chapter 7: the any-order network, exact imputation on tiny cases, the 4x4 TV machinery."""

import itertools
import json
import math
from pathlib import Path

import pytest
import results_tables
import torch

from arnb.chapters import ch07_any_order as ch
from arnb.enumeration import completions, conditional_by_completion
from arnb.models import JointTable
from arnb.models.any_order import AnyOrderConfig, AnyOrderNet, ensemble_log_prob
from arnb.testing import all_configurations, perturbation_dependency, sampler_p_value

ROOT = Path(__file__).resolve().parent.parent

D = 5


def spread_net(objective="any_order", dims=D, seed=0) -> AnyOrderNet:
    """A small net with large random weights, so that wrong answers differ visibly."""
    torch.manual_seed(seed)
    net = AnyOrderNet(AnyOrderConfig(dims=dims, hidden=(12, 12), objective=objective))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.8)
    return net.double()


def all_orders(d):
    return [list(p) for p in itertools.permutations(range(d))]


def test_every_order_sums_to_one_exhaustively():
    net = spread_net(dims=4)
    x = all_configurations(4, 2)
    with torch.no_grad():
        for order in all_orders(4):  # all 24 orders, all 16 configurations
            total = torch.logsumexp(net.log_prob(x, order=order), 0).exp()
            assert float(total) == pytest.approx(1.0, abs=1e-12)


def test_orders_give_different_models():
    # a random network is not a consistent joint: orders disagree (training makes them agree)
    net = spread_net(dims=4)
    x = all_configurations(4, 2)
    a = net.log_prob(x, order=[0, 1, 2, 3])
    b = net.log_prob(x, order=[3, 1, 0, 2])
    assert (a - b).abs().max() > 1e-3


def test_log_prob_is_the_sum_of_its_conditionals():
    net = spread_net()
    x = all_configurations(D, 2)
    order = [3, 0, 4, 1, 2]
    want = torch.zeros(len(x), dtype=torch.float64)
    for step, d in enumerate(order):
        observed = torch.zeros(D)
        observed[order[:step]] = 1
        p1 = torch.sigmoid(net.conditionals(x, observed)[:, d])
        want += torch.where(x[:, d] == 1, p1, 1 - p1).log()
    torch.testing.assert_close(net.log_prob(x, order=order), want, rtol=0, atol=1e-12)
    # and the default order is the model's order buffer
    net.set_order(order)
    torch.testing.assert_close(net.log_prob(x), want, rtol=0, atol=1e-12)


def test_conditionals_never_read_unobserved_values():
    net = spread_net()
    observed = torch.tensor([1.0, 0, 1, 0, 0])
    x = torch.tensor([1, 0, 1, 1, 0])

    def f(flat):
        return net.conditionals(flat, observed).reshape(len(flat), D, 1)

    dep = perturbation_dependency(f, x, 2, atol=1e-9)  # (out, in)
    assert not dep[:, observed == 0].any(), "an output depends on an unobserved value"
    assert dep[:, observed == 1].any(), "the observed values must matter"


@pytest.mark.parametrize("steps", [None, 2, 1])
def test_imputation_distribution_is_normalised_and_matches_the_sampler(steps):
    net = spread_net(objective="masked")
    observed = torch.tensor([0.0, 1, 0, 1, 0])
    x_obs = torch.tensor([1, 0])
    full, _ = completions(D, [1, 3], x_obs)
    with torch.no_grad():
        lq = net.log_prob_missing(full, observed, order=[4, 0, 1, 2, 3], steps=steps)
    assert float(torch.logsumexp(lq, 0).exp()) == pytest.approx(1.0, abs=1e-12)
    n = 6000
    start = torch.zeros(n, D, dtype=torch.long)
    start[:, 1], start[:, 3] = 1, 0
    g = torch.Generator().manual_seed(0)
    xs = net.impute(start, observed, order=[4, 0, 1, 2, 3], steps=steps, generator=g)
    assert torch.equal(xs[:, [1, 3]], start[:, [1, 3]]), "imputation changed observed pixels"
    assert sampler_p_value(xs, lq, full) > 1e-3


def test_imputation_keeps_observed_values_on_every_mask():
    net = spread_net()
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 2, (50, D), generator=g)
    for bits in itertools.product([0, 1], repeat=D):
        observed = torch.tensor(bits, dtype=torch.float)
        out = net.impute(x, observed, generator=g, steps=2)
        keep = observed.bool()
        assert torch.equal(out[:, keep], x[:, keep])


def test_the_any_order_bound_averages_the_orders_exactly():
    # E_t E_{|o|=t} [D / (D - t) sum_{d not in o} -log p(x_d | x_o)] = mean over all D! orders
    # of -log p(x | order): checked by enumerating every observed set
    net = spread_net(dims=4)
    x = torch.tensor([[1, 0, 1, 1], [0, 0, 1, 0]])
    d = 4
    with torch.no_grad():
        by_orders = torch.stack([-net.log_prob(x, order=o) for o in all_orders(d)]).mean(0)
        expect = torch.zeros(2, dtype=torch.float64)
        for t in range(d):
            subsets = list(itertools.combinations(range(d), t))
            for s in subsets:
                observed = torch.zeros(d)
                observed[list(s)] = 1
                logits = net.conditionals(x, observed)
                nll = torch.nn.functional.binary_cross_entropy_with_logits(
                    logits, x.double(), reduction="none"
                )
                term = (nll * (1 - observed)).sum(-1) * d / (d - t)
                expect += term / (d * len(subsets))
    torch.testing.assert_close(expect, by_orders, rtol=0, atol=1e-10)
    # and the Monte Carlo estimate the training uses is centred on it
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([net.any_order_bound(x, g) for _ in range(20000)]).mean(0)
    torch.testing.assert_close(draws, by_orders, rtol=0.03, atol=0.05)


@pytest.mark.parametrize("objective", ["any_order", "masked"])
def test_training_masks_are_drawn_on_the_models_device(objective):
    """Without a generator (training) the masks of ``train_nll`` are drawn where the model is: on
    a GPU, drawing and sorting them on the CPU every step cost more than the step. Checked on the
    meta device, where no arithmetic happens: every random draw and the sort must be made there."""
    from torch.overrides import TorchFunctionMode

    net = AnyOrderNet(AnyOrderConfig(dims=D, hidden=(8,), objective=objective)).to("meta")
    seen = []

    class Record(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            name = getattr(func, "__name__", "")
            if name in ("rand", "randint", "argsort") and isinstance(out, torch.Tensor):
                seen.append((name, out.device.type))
            return out

    draw = net._random_unmasked if objective == "masked" else net._random_observed
    with Record():
        draw(4)
    assert seen and all(device == "meta" for _, device in seen), seen
    g = torch.Generator().manual_seed(0)  # with a generator: drawn on its device, as before
    assert net._draw_device(g) == torch.device("cpu")


def test_ensemble_is_a_normalised_mixture():
    net = spread_net(dims=4)
    x = all_configurations(4, 2)
    orders = [[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2]]
    with torch.no_grad():
        ens = ensemble_log_prob(net, x, orders)
        want = torch.stack([net.log_prob(x, order=o).exp() for o in orders]).mean(0).log()
    torch.testing.assert_close(ens, want, rtol=0, atol=1e-12)
    assert float(torch.logsumexp(ens, 0).exp()) == pytest.approx(1.0, abs=1e-12)


def test_parallel_sampling_keeps_the_prompt_and_counts_passes():
    net = spread_net()
    calls = []
    original = net.conditionals

    def counting(x, observed):
        calls.append(1)
        return original(x, observed)

    net.conditionals = counting
    g = torch.Generator().manual_seed(0)
    x = net.sample(7, prompt=torch.tensor([1, 0]), steps=2, generator=g)
    assert x.shape == (7, D) and torch.equal(x[:, net.order[:2]], torch.tensor([[1, 0]] * 7))
    assert len(calls) == 2


# ------------------------------------------------------------------------------ 4x4 machinery


def tiny_table(dims=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    data = (torch.rand(400, dims, generator=g) < torch.linspace(0.2, 0.8, dims)).long()
    data[:100, :8] = 1  # some dependence
    return JointTable(dims, alpha=0.1).fit(data), data


def test_observed_patterns_match_enumeration():
    table, data = tiny_table()
    missing = ch.MISSING_4x4["checkerboard"]
    full, counts, obs = ch.observed_patterns(data[:50], missing)
    assert counts.sum() == 50 and full.shape == (len(obs) * 256, 16)
    lp = table.log_prob(full).double().view(-1, 256)
    lp = lp - torch.logsumexp(lp, -1, keepdim=True)
    obs_idx = [i for i in range(16) if i not in missing]
    ref = conditional_by_completion(table.log_prob, 16, obs_idx, obs[0])
    torch.testing.assert_close(lp[0], ref["log_conditional"], rtol=0, atol=1e-12)


def test_raster_completion_with_the_reference_is_exact_on_a_prefix_only():
    table, data = tiny_table()
    models = {"table": table}
    tvs = {}
    for name, missing in ch.MISSING_4x4.items():
        full, counts, _ = ch.observed_patterns(data[:40], missing)
        lp = table.log_prob(full).double().view(-1, 256)
        lp = lp - torch.logsumexp(lp, -1, keepdim=True)
        lq = ch.log_q_table("reference raster", models, full, missing, 8)
        tvs[name] = float(ch.tv_per_pattern(lp, lq).max())
    assert tvs["bottom half"] < 1e-12
    assert min(tvs[k] for k in ("top half", "left half", "checkerboard")) > 1e-3


def test_gibbs_propagation_matches_a_transition_matrix():
    net = spread_net(objective="masked", dims=D)
    missing = [0, 2, 3]
    obs_idx, obs_val = [1, 4], torch.tensor([1, 0])
    full, _ = completions(D, obs_idx, obs_val)
    k = 3
    got = ch.gibbs_log_q(net, full, missing, k, sweeps=2).exp()[0]
    # brute force: one kernel per site over the 8 states, applied in order
    observed = ch.observed_mask(D, missing)
    pi = net.log_prob_missing(full, observed, steps=1).exp().detach()
    for _ in range(2):
        for i, j in enumerate(missing):
            only_j = torch.ones(D)
            only_j[j] = 0
            p1 = torch.sigmoid(net.conditionals(full, only_j)[:, j]).detach()
            kernel = torch.zeros(8, 8, dtype=torch.float64)
            for s in range(8):
                for s2 in range(8):
                    if (s ^ s2) & ~(1 << (k - 1 - i)):
                        continue  # differ elsewhere than at site j
                    on = full[s2, j] == 1
                    kernel[s, s2] = p1[s] if on else 1 - p1[s]
            pi = pi @ kernel
    torch.testing.assert_close(got, pi, rtol=0, atol=1e-12)
    assert float(got.sum()) == pytest.approx(1.0, abs=1e-12)


def test_missing_sets_28():
    masks = ch.missing_sets28()
    assert set(masks) == {
        "top half",
        "left half",
        "centre square",
        "random half",
        "right 7 columns",
    }
    assert int((masks["top half"] == 0).sum()) == 392
    assert int((masks["random half"] == 0).sum()) == 392
    assert int((masks["centre square"] == 0).sum()) == 196
    assert math.isclose(float(masks["right 7 columns"].sum()), 784 - 196)


# ------------------------------------------------------------------------------ recipes (smoke)


def test_recipes_run_under_smoke(tmp_path):
    from arnb.config import Setup

    env = Setup(profile="smoke", device=torch.device("cpu"), seed=0)
    m4 = ch.ch07_imputation4(env, tmp_path)
    sets = {r["missing"] for r in m4["rows"]}
    assert sets == set(ch.MISSING_4x4)
    ref = [r for r in m4["rows"] if r["method"] == "reference raster"]
    assert {r["missing"]: r["tv"] for r in ref}["bottom half"] < 1e-9
    assert m4["chain_rule_error"] < 1e-6
    assert (tmp_path / "ch07_tv4.png").exists()
    m28 = ch.ch07_mnist28(env, tmp_path)
    nll = m28["nll"]
    # a mixture is never worse than its average member (the raster order is one of them)
    assert nll["any_order_ensemble"] > 0 and math.isfinite(nll["any_order_bound"])
    assert [r["passes"] for r in m28["parallel"]] == list(ch.SIZES["smoke"].pass_counts)
    assert (tmp_path / "ch07_inpainting28.png").exists()
    # the results page's tables (tools/results_tables.py, book/results/metrics/tables.json)
    # find every figure they name in what the recipes return
    runs = [
        {"recipe": name, "profile": "cpu", "metrics": metrics, "command": f"run {name}"}
        for name, metrics in (("ch07-imputation4", m4), ("ch07-mnist28", m28))
    ]
    spec = json.loads((ROOT / "book/results/metrics/tables.json").read_text())
    pages = {t["name"]: results_tables.render(t, runs, "test") for t in spec["tables"]}
    assert "| (c) any-order network, observed first | 8 |" in pages["ch07_imputation4"]
    assert "| raster MADE | " in pages["ch07_mnist28"]
