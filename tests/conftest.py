"""Fixtures shared by the unit tests (the repository's ``conftest.py`` sets the profile and
data)."""

import pytest

from arnb.train import cpu_threads


@pytest.fixture
def one_thread():
    """Small sequential ops: one thread avoids thread-synchronisation stalls on busy machines.

    A test module opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    with cpu_threads(1):
        yield
