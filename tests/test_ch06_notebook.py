"""Chapter 6: the GPT the notebook writes in front of the reader is ``arnb.models.GPT``.

The ``builds-model`` cells of ``notebooks/06_gpt.ipynb`` run in a fresh namespace; their
attention, MLP, block and GPT load into the library's classes and must give the same numbers,
and the notebook's KV-cache step must equal full recomputation.
"""

from pathlib import Path

import pytest
import torch

from arnb.models import gpt as lib
from arnb.testing import notebook_namespace

pytestmark = pytest.mark.usefixtures("one_thread")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "06_gpt.ipynb"


@pytest.fixture(scope="module")
def nb():
    return notebook_namespace(NOTEBOOK)


def config(attention="explicit"):
    return lib.GPTConfig(
        vocab_size=7, block_size=9, n_layer=2, n_head=2, n_embd=12, attention=attention
    )


def test_causal_attention_ignores_the_future(nb):
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(3, 2, 6, 4, generator=g)
    y = nb["causal_attention"](q, k, v)
    for t in range(6):
        changed = [z.clone() for z in (q, k, v)]
        for z in changed:
            z[:, t + 1 :] = torch.randn(z[:, t + 1 :].shape, generator=g)
        assert torch.equal(nb["causal_attention"](*changed)[:, : t + 1], y[:, : t + 1])
    torch.testing.assert_close(
        y, torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    )


@pytest.mark.parametrize(
    "ours, theirs",
    [
        ("CausalSelfAttention", lambda c: lib.CausalSelfAttention(c, 0)),
        ("MLP", lambda c: lib.MLP(c)),
        ("Block", lambda c: lib.Block(c, 0)),
    ],
)
def test_pieces_equal_the_library(nb, ours, theirs):
    torch.manual_seed(0)
    c = config()
    args = (c.n_embd,) if ours == "MLP" else (c.n_embd, c.n_head)
    mine, library = nb[ours](*args), theirs(c).eval()
    library.load_state_dict(mine.state_dict())
    x = torch.randn(2, 5, c.n_embd)
    with torch.no_grad():
        torch.testing.assert_close(mine(x), library(x), rtol=0, atol=0)


@pytest.mark.parametrize("attention", ["explicit", "sdpa"])
def test_notebook_gpt_equals_arnb_gpt(nb, attention):
    torch.manual_seed(0)
    c = config(attention)
    ours = nb["GPT"](c.vocab_size, c.block_size, c.n_layer, c.n_head, c.n_embd)
    theirs = lib.GPT(c).eval()
    theirs.load_state_dict(ours.state_dict())  # strict: the same names and shapes
    tokens = torch.randint(0, c.vocab_size, (3, c.block_size))
    with torch.no_grad():
        mine = ours(theirs.with_bos(tokens)[:, :-1])
        library = theirs(tokens)
    if attention == "explicit":  # the same operations in the same order
        torch.testing.assert_close(mine, library, rtol=0, atol=0)
    else:  # the fused kernel sums in another order
        torch.testing.assert_close(mine, library, rtol=1e-5, atol=1e-5)


def test_kv_step_equals_full_recomputation(nb):
    torch.manual_seed(0)
    c = config()
    attn = nb["CausalSelfAttention"](c.n_embd, c.n_head)
    x = torch.randn(2, 8, c.n_embd)
    hd = c.n_embd // c.n_head
    with torch.no_grad():
        full = attn(x)
        past_k = past_v = torch.zeros(2, c.n_head, 0, hd)
        outs = []
        for t in range(x.shape[1]):
            y, past_k, past_v = nb["attention_step"](attn, x[:, t : t + 1], past_k, past_v)
            outs.append(y)
    assert past_k.shape == past_v.shape == (2, c.n_head, 8, hd)
    torch.testing.assert_close(torch.cat(outs, dim=1), full, rtol=0, atol=1e-5)
    # and the library's cache, fed the same weights, agrees with the notebook's step
    library = lib.CausalSelfAttention(c, 0).eval()
    library.load_state_dict(attn.state_dict())
    cache = lib.KVCache(lib.GPTConfig(**{**c.__dict__, "n_layer": 1}), 2, "cpu")
    with torch.no_grad():
        steps = []
        for t in range(x.shape[1]):
            steps.append(library(x[:, t : t + 1], cache))
            cache.length += 1
    torch.testing.assert_close(torch.cat(steps, dim=1), torch.cat(outs, dim=1), atol=1e-6, rtol=0)
