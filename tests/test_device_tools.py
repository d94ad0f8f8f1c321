"""The GPU machine's tools, run here: carried wheels installed only where missing, and notebooks
executed across calls by tools/gpu_notebooks.sh (under the smoke profile)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import device_site
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "filename, name",
    [
        ("Hershey_Fonts-2.1.0-py2.py3-none-any.whl", "hershey-fonts"),
        ("jupyter_client-8.10.0-py3-none-any.whl", "jupyter-client"),
        ("zope.interface-7.0-cp312-cp312-manylinux_2_17_x86_64.whl", "zope-interface"),
        ("rpds_py-2026.9.1-cp312-cp312-manylinux_2_17_x86_64.whl", "rpds-py"),
    ],
)
def test_dist_name_normalises_the_wheel_name(filename, name):
    assert device_site.dist_name(Path(filename)) == name


def _wheel(folder: Path, name: str, version: str = "0.1") -> Path:
    """A minimal pure-Python wheel with one module ``<name>.py`` that sets ``VALUE = 7``."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": b"VALUE = 7\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    files[f"{dist}/RECORD"] = ("\n".join(record + [f"{dist}/RECORD,,"]) + "\n").encode()
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in files.items():
            zf.writestr(member, data)
    return path


def test_only_missing_wheels_are_installed_and_found_afterwards(tmp_path, monkeypatch, capsys):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    new = _wheel(wheels, "arnb_devsite_probe")
    installed = _wheel(wheels, "numpy", "0.0.1")  # a name this Python has: must be left alone
    assert device_site.missing([new, installed]) == [new]

    target = tmp_path / "site"
    assert device_site.main([str(wheels), str(target)]) == 0
    assert "1 of 2 wheels already installed" in capsys.readouterr().out
    assert (target / "arnb_devsite_probe.py").read_text() == "VALUE = 7\n"
    assert not (target / "numpy").exists()  # the image's numpy is never shadowed

    monkeypatch.syspath_prepend(str(target))  # as PYTHONPATH on the machine: a rerun finds it
    assert device_site.missing([new, installed]) == []


def test_an_empty_wheel_folder_is_an_error(tmp_path):
    with pytest.raises(SystemExit):
        device_site.main([str(tmp_path), str(tmp_path / "site")])


def test_gpu_notebooks_runs_across_calls_and_packs_the_executed_notebook(tmp_path):
    """The first call starts the run and returns before it ends; the next call only waits and
    packs. The notebook in the checkout is left as it was (the executed copy goes to STATE)."""
    source = ROOT / "notebooks" / "00_setup.ipynb"
    before = source.read_bytes()
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "STATE": str(tmp_path / "state"),
        "OUT": str(tmp_path / "out"),
    }
    script = ["bash", str(ROOT / "tools" / "gpu_notebooks.sh"), "--smoke"]
    nothing = subprocess.run(script + ["--collect"], env=env, capture_output=True, text=True)
    assert nothing.returncode == 3 and "no runs" in nothing.stderr  # a fresh machine: no restart
    assert not (tmp_path / "state").exists()
    first = subprocess.run(
        script + ["00"], env={**env, "WAIT": "0"}, capture_output=True, text=True, timeout=120
    )
    assert first.returncode == 0, first.stderr
    assert "started 00_setup under profile smoke" in first.stdout
    assert "still running" in first.stdout

    second = subprocess.run(
        script + ["--collect"],
        env={**env, "WAIT": "300"},
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert second.returncode == 0, second.stderr
    assert "runs started earlier: 00_setup" in second.stdout
    assert "- 00_setup: rc=0" in second.stdout

    with tarfile.open(tmp_path / "out" / "notebooks.tar.gz") as tar:
        names = tar.getnames()
        assert "00_setup.rc" in names and "summary.md" in names
        executed = nbformat.reads(tar.extractfile("out/00_setup.ipynb").read().decode(), 4)
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert any("profile=smoke" in json.dumps(o) for o in outputs)
    assert source.read_bytes() == before
