#!/usr/bin/env bash
# Build the ignored folder .devdata/ that a GPU machine without network needs for the gpu recipes:
# the offline data sets (from ../shared/data or $ARNB_DATA_DIR) and the pure-Python hershey-fonts
# package under .devdata/site. On that machine:
#   ARNB_DATA_DIR=$PWD/.devdata PYTHONPATH=$PWD:$PWD/.devdata/site tools/run_gpu_recipes.sh OUT RECIPE...
set -euo pipefail
cd "$(dirname "$0")/.."
src=${ARNB_DATA_DIR:-../shared/data}
mkdir -p .devdata/site
for d in MNIST tinyshakespeare sketch-rnn gpt2; do
  cp -r "$src/$d" .devdata/
done
chmod -R u+w .devdata
wheel_dir=$(mktemp -d)
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$wheel_dir" "hershey-fonts==2.1.0"
python3 -m pip install --quiet --no-deps --no-compile --target .devdata/site "$wheel_dir"/*.whl
du -sh .devdata
