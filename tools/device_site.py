"""Install the carried wheels that this Python lacks into one folder, for ``PYTHONPATH``.

The GPU machine has no network and its image has torch, numpy, matplotlib and the like, but
not everything the book needs (hershey-fonts, a Jupyter kernel and nbclient to execute
notebooks). ``tools/prepare_device_data.sh`` downloads those wheels, with their dependencies,
into ``.devdata/wheels``; on the machine:

    python3 tools/device_site.py .devdata/wheels /tmp/arnb-site
    export PYTHONPATH=$PWD:/tmp/arnb-site

A wheel whose distribution is already installed (in any version) is left out, so the image's
own packages are never shadowed; run it again and what it installed before is found and kept.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path


def dist_name(wheel: Path) -> str:
    """The normalised distribution name of a wheel file (PEP 427 name, PEP 503 form)."""
    return re.sub(r"[-_.]+", "-", wheel.name.split("-", 1)[0]).lower()


def missing(wheels: list[Path]) -> list[Path]:
    """The wheels whose distribution this interpreter cannot find."""
    out = []
    for wheel in wheels:
        try:
            metadata.distribution(dist_name(wheel))
        except metadata.PackageNotFoundError:
            out.append(wheel)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheels", type=Path, help="folder of .whl files")
    parser.add_argument("target", type=Path, help="folder to install into (put it on PYTHONPATH)")
    args = parser.parse_args(argv)
    wheels = sorted(args.wheels.glob("*.whl"))
    if not wheels:
        parser.error(f"no wheels in {args.wheels}: run tools/prepare_device_data.sh first")
    todo = missing(wheels)
    print(f"{len(wheels) - len(todo)} of {len(wheels)} wheels already installed")
    if todo:
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps"]
        cmd += ["--no-compile", "--disable-pip-version-check", "--target", str(args.target)]
        subprocess.run(cmd + [str(w) for w in todo], check=True)
        print(f"installed into {args.target}: {' '.join(dist_name(w) for w in todo)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
