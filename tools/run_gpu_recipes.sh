#!/usr/bin/env bash
# Run several recipes' gpu profile on one GPU and collect their outputs.
#
#   tools/run_gpu_recipes.sh [--one-by-one] OUT_DIR RECIPE [RECIPE ...]
#
# Each recipe runs as `python -m arnb run RECIPE --profile gpu --out OUT_DIR/RECIPE`, its log in
# OUT_DIR/RECIPE.log. By default they run at the same time (fine for the small recurrent models);
# with --one-by-one each has the card to itself, which the PixelCNN recipes need: they plan their
# step count from a timing taken at the start. The script prints each one's metrics.json.
# (How the book's gpu figures were produced: see book/results.md for the card and date.)
set -u
# from the repository root: data and wheels carried in .devdata/ (tools/prepare_device_data.sh)
PY=python3
. tools/device_env.sh
sequential=0
if [ "${1:-}" = "--one-by-one" ]; then sequential=1; shift; fi
out=$1; shift
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$out/gpu.txt" 2>/dev/null || true
status=0
pids=()
for r in "$@"; do
  if [ $sequential = 1 ]; then
    python3 -m arnb run "$r" --profile gpu --out "$out/$r" > "$out/$r.log" 2>&1 || { echo "FAILED: $r"; status=1; }
  else
    python3 -m arnb run "$r" --profile gpu --out "$out/$r" > "$out/$r.log" 2>&1 &
    pids+=($!)
  fi
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || { echo "FAILED: ${@:$((i+1)):1}"; status=1; }
done
for r in "$@"; do
  echo "== $r"; cat "$out/$r/metrics.json" 2>/dev/null || tail -20 "$out/$r.log"
done
exit $status
