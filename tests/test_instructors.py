"""The instructors' exercise table is generated from the notebooks and kept up to date."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_exercise_table_is_up_to_date():
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "exercise_table.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
