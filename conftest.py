"""pytest set-up shared by the unit tests and nbval.

Notebooks run under the ``smoke`` profile. Unless ARNB_DATA_DIR is set, the course's offline
data folder beside the repository (``../shared/data``) is used when it exists, and then nothing
is downloaded; without any offline folder the loaders download into the cache as usual.
The solution notebooks run with strict exercise checkers (see ``pytest_runtest_setup``).
The scripts of ``tools/`` import as modules (``import check_book``), for their tests.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "tools"))

os.environ["ARNB_PROFILE"] = "smoke"
os.environ.setdefault("MPLBACKEND", "Agg")
_shared = Path(__file__).resolve().parent.parent / "shared" / "data"
if "ARNB_DATA_DIR" not in os.environ and _shared.is_dir():
    os.environ["ARNB_DATA_DIR"] = str(_shared)
if "ARNB_DATA_DIR" in os.environ:
    os.environ.setdefault("ARNB_OFFLINE", "1")


def pytest_runtest_setup(item):
    """The solution notebooks run with strict checkers (a failed exercise check is an error);
    the unit tests of the checkers see them lenient, returning False on a wrong answer."""
    from arnb.exercises import STRICT_ENV

    if str(item.fspath).endswith(".ipynb"):
        os.environ[STRICT_ENV] = "strict"
    else:
        os.environ.pop(STRICT_ENV, None)
