"""Chapter 2: the tanh RNN the notebook writes out is the library's ``CharRNN`` (cell="rnn").

``TanhRNNLM`` comes from the notebook's ``builds-model`` cells; loaded with a ``CharRNN``'s
state dict (the same parameter names) it must give the same log-probabilities. Float64:
``nn.RNN`` adds the four terms of the update in another order, which float32 rounds visibly.
"""

from pathlib import Path

import pytest
import torch

from arnb.models.rnn_lm import CharRNN, RNNConfig
from arnb.testing import notebook_namespace

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "02_markov_to_rnn.ipynb"


@pytest.fixture(scope="module")
def ns():
    return notebook_namespace(NOTEBOOK)


def test_written_out_rnn_equals_char_rnn(ns):
    torch.manual_seed(0)
    library = CharRNN(RNNConfig(vocab_size=7, cell="rnn", embed=8, hidden=16, layers=1))
    ours = ns["TanhRNNLM"](7, embed=8, hidden=16)
    assert set(ours.state_dict()) == set(library.state_dict())
    ours.load_state_dict(library.state_dict())
    library.double()
    ours.double()
    x = torch.randint(0, 7, (3, 25), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(ours.log_prob(x), library.log_prob(x), rtol=0, atol=1e-10)
        # and each conditional, not only their sum: the first symbol alone, then two
        for t in (1, 2):
            torch.testing.assert_close(
                ours.log_prob(x[:, :t]), library.log_prob(x[:, :t]), rtol=0, atol=1e-12
            )


def test_written_out_rnn_is_a_distribution(ns):
    """The probabilities of all 3**4 texts of length 4 over 3 symbols sum to one."""
    from arnb.testing import all_configurations, assert_normalized

    torch.manual_seed(0)
    model = ns["TanhRNNLM"](3, embed=4, hidden=8).double()
    with torch.no_grad():
        assert_normalized(model.log_prob, all_configurations(4, 3), atol=1e-9)
