"""Fixtures shared by the unit tests (the repository's ``conftest.py`` sets the profile and
data)."""

import pytest
import torch

from arnb.train import cpu_threads


@pytest.fixture
def one_thread():
    """Small sequential ops: one thread avoids thread-synchronisation stalls on busy machines.

    A test module opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    with cpu_threads(1):
        yield


@pytest.fixture
def tf32():
    """TF32 allowed for the test, as arnb.setup leaves it on CUDA (the flags exist on every
    build), and restored after. Returns a reader of the two flags: (matmul, cudnn)."""
    before = _tf32_flags()
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    yield _tf32_flags
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def _tf32_flags() -> tuple[bool, bool]:
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
