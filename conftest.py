"""pytest set-up shared by the unit tests and nbval.

Notebooks run under the ``smoke`` profile. Unless ARNB_DATA_DIR is set, the course's offline
data folder beside the repository (``../shared/data``) is used when it exists, and then nothing
is downloaded; without any offline folder the loaders download into the cache as usual.
"""

import os
from pathlib import Path

os.environ["ARNB_PROFILE"] = "smoke"
os.environ.setdefault("MPLBACKEND", "Agg")
_shared = Path(__file__).resolve().parent.parent / "shared" / "data"
if "ARNB_DATA_DIR" not in os.environ and _shared.is_dir():
    os.environ["ARNB_DATA_DIR"] = str(_shared)
if "ARNB_DATA_DIR" in os.environ:
    os.environ.setdefault("ARNB_OFFLINE", "1")
