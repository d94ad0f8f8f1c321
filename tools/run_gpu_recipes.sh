#!/usr/bin/env bash
# Run several recipes' gpu profile concurrently on one GPU and collect their outputs.
#
#   tools/run_gpu_recipes.sh OUT_DIR RECIPE [RECIPE ...]
#
# Each recipe runs as `python -m arnb run RECIPE --profile gpu --out OUT_DIR/RECIPE`, its log in
# OUT_DIR/RECIPE.log; the script waits for all of them and prints each one's metrics.json.
# (How the book's gpu figures were produced: see book/results.md for the card and date.)
set -u
out=$1; shift
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$out/gpu.txt" 2>/dev/null || true
pids=()
for r in "$@"; do
  python3 -m arnb run "$r" --profile gpu --out "$out/$r" > "$out/$r.log" 2>&1 &
  pids+=($!)
done
status=0
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || { echo "FAILED: ${@:$((i+1)):1}"; status=1; }
done
for r in "$@"; do
  echo "== $r"; cat "$out/$r/metrics.json" 2>/dev/null || tail -20 "$out/$r.log"
done
exit $status
