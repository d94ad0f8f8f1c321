"""tools/check_wheel.py: the wheel builds and holds every module the notebooks import, and the
check itself notices a module missing from a wheel, an undeclared import or a failed import.
The Python 3.12 install and run downloads gigabytes: only with ARNB_WHEEL_PY312=DIR."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import check_wheel
import pytest

ROOT = Path(__file__).resolve().parent.parent

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    return check_wheel.build_wheel(tmp_path_factory.mktemp("wheel"))


def test_the_wheel_holds_every_module_the_notebooks_import(wheel):
    assert check_wheel.static_problems(wheel, NOTEBOOKS) == []
    modules = check_wheel.wheel_modules(wheel)
    assert {"arnb", "arnb.train", "arnb.models", "arnb.exercises", "arnb.chapters"} <= modules
    assert modules == check_wheel.source_modules()


def test_a_module_missing_from_the_wheel_is_reported(wheel, tmp_path):
    broken = tmp_path / wheel.name
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(broken, "w") as dst:
        for item in src.infolist():
            if item.filename != "arnb/train.py":
                dst.writestr(item, src.read(item))
    problems = check_wheel.static_problems(broken, NOTEBOOKS)
    assert "module arnb.train of the checkout is not in the wheel" in problems
    assert "the notebooks import arnb.train, which the wheel lacks" in problems


def _notebook(path: Path, *sources: str) -> Path:
    cells = [{"cell_type": "code", "source": s, "metadata": {}, "outputs": []} for s in sources]
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4}))
    return path


def test_notebook_imports_read_through_magics_and_flag_undeclared_packages(wheel, tmp_path):
    nb = _notebook(
        tmp_path / "x.ipynb",
        "import sys\nif 'google.colab' in sys.modules:\n    %pip install arnb\n",
        "import pandas as pd\nfrom arnb.exercises import ch01\nfrom IPython.display import HTML",
        "!ls\nimport torch.nn.functional as F",
    )
    modules, names = check_wheel.notebook_imports([nb])
    assert {"sys", "pandas", "arnb.exercises", "IPython.display", "torch.nn.functional"} == modules
    assert "arnb.exercises.ch01" in names
    problems = check_wheel.static_problems(wheel, [nb])
    assert problems == ["the notebooks import pandas, which no dependency declares"]


def test_a_python_that_is_not_312_is_skipped_with_a_reason():
    python, why = check_wheel.find_python312(sys.executable)
    if sys.version_info[:2] == (3, 12):
        pytest.skip("this is Python 3.12")
    assert python is None
    assert sys.executable in why and ("not 3.12" in why or "Error" in why)


def test_the_import_check_reports_a_missing_module_and_name(tmp_path):
    code = check_wheel.import_script(["json", "no_such_module_x"], ["json.dumps", "json.nope"])
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    failed = json.loads(done.stdout)
    assert len(failed) == 2
    assert failed[0].startswith("import no_such_module_x: ModuleNotFoundError")
    assert failed[1].startswith("from json import nope: ModuleNotFoundError")


def test_the_kernel_s_modules_are_not_imported(wheel, tmp_path):
    nb = _notebook(tmp_path / "x.ipynb", "from IPython.display import HTML\nimport torch")
    modules, names = check_wheel.what_to_import(wheel, [nb])
    assert "torch" in modules and "arnb.train" in modules
    assert not any(m.startswith("IPython") for m in modules + names)


def test_provision_refuses_a_folder_inside_the_checkout():
    with pytest.raises(SystemExit):
        check_wheel.main(["--provision", str(ROOT / "venv312")])


@pytest.mark.skipif(
    not os.environ.get("ARNB_WHEEL_PY312"),
    reason="set ARNB_WHEEL_PY312=DIR to install the wheel into a fresh Python 3.12 venv in DIR "
    "(torch from the index: about 0.9 GB downloaded, 6 GB on disk, about 2 minutes)",
)
def test_the_wheel_installs_and_runs_in_a_fresh_python_312(capsys):
    status = check_wheel.main(["--provision", os.environ["ARNB_WHEEL_PY312"]])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "Python 3.12" in out and "ran under smoke" in out
