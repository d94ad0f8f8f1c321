#!/usr/bin/env bash
# One prepared GPU session for chapter 5 (issue 17), at most ~9 minutes of wall time:
#
#   1. environment (GPU, driver, torch) and the cached sampler's tests, CUDA graph included;
#   2. sampling benchmark: naive / fast / cached (CUDA graph) / cached without the graph, batch
#      1..256, same images asserted (tools/bench_pixelcnn_sampling.py);
#   3. training-step benchmark: eager, cudnn.benchmark, channels-last, fp32, fused AdamW,
#      torch.compile, compile with CUDA graphs, larger batches (tools/bench_pixelcnn_step.py);
#   4. the pixelcnn-binary recipe under the gpu profile, if enough time is left (then
#      pixelcnn-mnist8 too, never in practice within 9 minutes: run it in a session of its own).
#
# Every step runs under `timeout` against one deadline; each step's log and outputs go to
# $OUT/session/, packed at the end as $OUT/gpu_session.tar.gz (plus summary.md next to it). Nothing is read
# from outside the repository: the data come in the ignored folder .devdata/
# (tools/prepare_device_data.sh builds it; carry it along).
#
#   bash tools/gpu_session.sh            # on the GPU machine ($OUT is set there)
#   bash tools/gpu_session.sh --smoke    # here, on the CPU: tiny sizes, every code path, ~3 min
#
# Environment: PYTHON (default python3), BUDGET (seconds, default 530 / 400 with --smoke),
# ARNB_DATA_DIR (default .devdata/ when it exists).
set -u
cd "$(dirname "$0")/.."
smoke=0
if [ "${1:-}" = "--smoke" ]; then smoke=1; shift; fi
PY=${PYTHON:-python3}
start=$(date +%s)
budget=${BUDGET:-$([ $smoke = 1 ] && echo 400 || echo 530)}
deadline=$((start + budget))
if [ -z "${OUT:-}" ]; then OUT=runs/gpu-session$([ $smoke = 1 ] && echo -smoke); fi
mkdir -p "$OUT"
# written under $OUT as it goes: if the session is cut off, the unpacked folder comes back
work=$OUT/session
rm -rf "$work" && mkdir -p "$work"
# data and the carried wheels (hershey-fonts) from .devdata/
. tools/device_env.sh > "$work/site.log" 2>&1
summary=$work/summary.md
echo "# GPU session $(date -u +%FT%TZ), smoke=$smoke, budget ${budget}s" > "$summary"

left() { echo $((deadline - $(date +%s))); }

# step NAME SECONDS CMD...: run CMD with at most SECONDS (and never past the deadline)
step() {
  local name=$1 limit=$2; shift 2
  local remaining; remaining=$(left)
  if [ "$remaining" -lt 20 ]; then
    echo "- $name: skipped (${remaining}s left)" | tee -a "$summary"; return 0
  fi
  [ "$limit" -gt $((remaining - 15)) ] && limit=$((remaining - 15))
  local t0; t0=$(date +%s)
  echo "== $name (limit ${limit}s)"
  timeout --kill-after=10 "$limit" "$@" > "$work/$name.log" 2>&1
  local rc=$?
  echo "- $name: rc=$rc, $(( $(date +%s) - t0 ))s (limit ${limit}s)$([ $rc = 124 ] && echo ', TIMED OUT')" \
    | tee -a "$summary"
  tail -5 "$work/$name.log"
  return 0
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || true
  "$PY" -c 'import torch, sys; print(sys.version.split()[0], torch.__version__, torch.version.cuda,
torch.cuda.is_available() and torch.cuda.get_device_name())' 2>&1
  echo "ARNB_DATA_DIR=${ARNB_DATA_DIR:-unset}"; } > "$work/env.txt"
cat "$work/env.txt"

if [ $smoke = 1 ]; then
  sampling=(--profile smoke --size 8 --threads 1)
  batches=1,2; batches8=1
  stepargs=(--smoke)
  profile=smoke
else
  sampling=(--profile gpu)
  batches=1,4,16,64,256; batches8=1,64
  stepargs=(--batch 256 --steps 50)
  profile=gpu
fi

# 1. the cached sampler equals the naive loop, also replayed as a CUDA graph on the card
#    (-o addopts=: the machine has pytest but not nbval, which pyproject.toml's options name)
step tests 120 env OMP_NUM_THREADS=1 "$PY" -m pytest -q -p no:cacheprovider -o addopts= \
  tests/test_ch05_cached_sampler.py
# 2. sampling speed against batch size (binary digits, then the 256-way head at two sizes)
step sampling 150 "$PY" tools/bench_pixelcnn_sampling.py "${sampling[@]}" --batches $batches \
  --out "$work/sampling"
# 3. training-step speed-ups, as ratios in one process
step train_step 240 "$PY" tools/bench_pixelcnn_step.py "${stepargs[@]}" --out "$work/step"
# 4. the recipes, while time is left (binary: 80 s of training after compiling twice, plus
#    evaluation and sampling)
need=$([ $smoke = 1 ] && echo 60 || echo 180)
for r in pixelcnn-binary pixelcnn-mnist8; do
  if [ "$(left)" -ge "$need" ]; then
    step "$r" 600 "$PY" -m arnb run "$r" --profile "$profile" --out "$work/$r"
  else
    echo "- $r: not run ($(left)s left, needs ${need}s)" | tee -a "$summary"
  fi
  need=$([ $smoke = 1 ] && echo 60 || echo 330)
done
# the sampling benchmark of the 8-bit head, if a minute is left
if [ "$(left)" -ge 60 ]; then
  step sampling_mnist8 45 "$PY" tools/bench_pixelcnn_sampling.py "${sampling[@]}" \
    --batches $batches8 --task mnist8 --out "$work/sampling_mnist8"
fi

# collect the readable parts into the summary, then pack everything
for f in "$work"/sampling/sampling.md "$work"/sampling_mnist8/sampling.md "$work"/step/step.md; do
  [ -f "$f" ] && { echo; echo "## ${f#"$work"/}"; echo; cat "$f"; } >> "$summary"
done
for r in pixelcnn-binary pixelcnn-mnist8; do
  [ -f "$work/$r/metrics.json" ] && { echo; echo "## $r"; echo; echo '```json';
    cat "$work/$r/metrics.json"; echo; echo '```'; } >> "$summary"
done
{ echo; echo "## tests"; echo; echo '```'; tail -15 "$work/tests.log" 2>/dev/null; echo '```'
  echo; echo "total $(( $(date +%s) - start ))s"; } >> "$summary"
cp "$summary" "$work/env.txt" "$OUT"/
tar czf "$OUT/gpu_session.tar.gz" -C "$work" .
rm -rf "$work"
echo "wrote $OUT/gpu_session.tar.gz and $OUT/summary.md ($(( $(date +%s) - start ))s)"
