#!/usr/bin/env bash
# Build the ignored folder .devdata/ that the GPU machine (no network) needs, to be carried along
# (`carry: [".devdata"]`):
#   - the offline data sets (from ../shared/data or $ARNB_DATA_DIR);
#   - wheels/: what that machine's Python lacks to run the recipes and to execute notebooks:
#     hershey-fonts, and a Jupyter kernel with nbclient and ipywidgets (its image has torch,
#     numpy, matplotlib, scipy, tqdm and regex, but no Jupyter). The versions are this
#     environment's, the ones CI tests; their dependencies are resolved by pip for the device's
#     Python ($DEVICE_PYTHON, default 3.12) on manylinux x86_64.
# There, tools/device_site.py installs the wheels that machine lacks into a folder for PYTHONPATH
# (tools/gpu_session.sh and tools/gpu_notebooks.sh do it).
set -euo pipefail
cd "$(dirname "$0")/.."
src=${ARNB_DATA_DIR:-../shared/data}
rm -rf .devdata
mkdir -p .devdata/wheels
for d in MNIST tinyshakespeare sketch-rnn gpt2; do
  cp -r "$src/$d" .devdata/
done
chmod -R u+w .devdata
pins=$(python3 - <<'PY'
from importlib.metadata import version
print(" ".join(f"{n}=={version(n)}" for n in ("hershey-fonts", "nbclient", "ipykernel", "ipywidgets")))
PY
)
py=${DEVICE_PYTHON:-3.12}
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
  manylinux1_x86_64; do platforms+=(--platform "$p"); done
# shellcheck disable=SC2086  # $pins is a list of requirements
python3 -m pip download --quiet --only-binary=:all: --python-version "$py" --implementation cp \
  "${platforms[@]}" --platform any -d .devdata/wheels $pins
echo "wheels for Python $py: $pins and $(( $(ls .devdata/wheels | wc -l) - 4 )) dependencies"
du -sh .devdata .devdata/wheels
