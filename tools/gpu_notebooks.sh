#!/usr/bin/env bash
# Execute chapter notebooks under the gpu profile on the GPU machine, across calls (issue 17).
#
#   bash tools/gpu_notebooks.sh 05            # on the GPU machine, from the repository root
#   bash tools/gpu_notebooks.sh 04 06         # two at once: they share the card
#   bash tools/gpu_notebooks.sh --one-by-one 01 03  # each with the card to itself
#   bash tools/gpu_notebooks.sh --smoke 02 03 # here, on the CPU, under the smoke profile
#
# The first call starts the notebooks' executions (`tools/nb.py run --profile gpu --out`) in a
# process session of its own (setsid), all at the same time unless --one-by-one (the time-budgeted
# fits plan their steps from a timing taken at their start), so that the runs outlive the call
# while the machine stays warm (30 s after a call). It then waits until every run has ended or
# WAIT seconds have passed, and packs what there is into $OUT/notebooks.tar.gz (plus summary.md):
# the executed notebooks, each one's log, rc and wall time, and nvidia-smi samples of the
# card's use and memory (what sharing it costs). A later call finds the runs in $STATE and only
# waits and packs again, so a notebook longer than one call (10 minutes at most) is collected by
# the next call, made at once. With --collect a call never starts anything: on a fresh machine
# (the last one was given back, and the runs with it) it says so and exits 3.
#
#   run(command="bash tools/gpu_notebooks.sh 05", carry=[".devdata"], timeout_s=570)
#   run(command="WAIT=200 bash tools/gpu_notebooks.sh --collect", carry=[".devdata"], timeout_s=230)
#
# Then, here: unpack, copy the executed notebooks over notebooks/, `python tools/exercise_table.py`,
# and commit them (the line `arnb.setup` prints names the card).
#
# Environment: PYTHON (default python3), WAIT (seconds this call waits, default 540, 300 with
# --smoke), NB_LIMIT (seconds one notebook may run, default 1500), STATE (default
# /tmp/arnb-gpu-notebooks, -smoke with --smoke; delete it to start over), OUT (default runs/...).
set -u
cd "$(dirname "$0")/.."
smoke=0 sequential=0 collect=0
while [ $# -gt 0 ]; do
  case $1 in
    --smoke) smoke=1 ;;
    --one-by-one) sequential=1 ;;
    --collect) collect=1 ;;
    *) break ;;
  esac
  shift
done
PY=${PYTHON:-python3}
profile=$([ $smoke = 1 ] && echo smoke || echo gpu)
wait_s=${WAIT:-$([ $smoke = 1 ] && echo 300 || echo 540)}
state=${STATE:-/tmp/arnb-gpu-notebooks$([ $smoke = 1 ] && echo -smoke)}
OUT=${OUT:-runs/gpu-notebooks$([ $smoke = 1 ] && echo -smoke)}
start=$(date +%s)
if [ $collect = 1 ] && [ ! -f "$state/names" ]; then
  echo "--collect: no runs in $state; this machine is not the one that started them" >&2
  exit 3
fi
mkdir -p "$OUT" "$state"

names=()
for arg in "$@"; do
  matches=(notebooks/"$arg"_*.ipynb)
  if [ ! -f "${matches[0]}" ]; then echo "no notebook notebooks/${arg}_*.ipynb" >&2; exit 2; fi
  names+=("$(basename "${matches[0]}" .ipynb)")
done

. tools/device_env.sh > "$state/site-$start.log" 2>&1

if [ -f "$state/names" ]; then
  echo "runs started earlier: $(cat "$state/names") (this call waits and packs)"
  [ $# -gt 0 ] && [ "${names[*]}" != "$(cat "$state/names")" ] \
    && echo "  (asked for: ${names[*]}; delete $state to start those instead)"
  read -r -a names < "$state/names"
else
  if [ ${#names[@]} = 0 ]; then
    echo "usage: $0 [--smoke] [--one-by-one] NN [NN ...], or $0 [--smoke] --collect" >&2
    exit 2
  fi
  { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || true
    "$PY" -c 'import torch, sys; print(sys.version.split()[0], torch.__version__,
torch.cuda.is_available() and torch.cuda.get_device_name())' 2>&1
    echo "profile=$profile ARNB_DATA_DIR=${ARNB_DATA_DIR:-unset}"; } > "$state/env.txt"
  cat "$state/env.txt"
  mkdir -p "$state/out"
  # The launcher: the notebooks at once (or one after the other), each writing NAME.rc and
  # NAME.seconds when it ends, and nvidia-smi sampling the card until the last one has ended.
  {
    echo "cd '$PWD'"
    echo "nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits -l 2 > '$state/gpu.csv' 2>/dev/null & smi=\$!"
    for n in "${names[@]}"; do
      echo "( t0=\$(date +%s); timeout --kill-after=10 ${NB_LIMIT:-1500} '$PY' tools/nb.py run notebooks/$n.ipynb --profile $profile --out '$state/out' > '$state/$n.log' 2>&1; rc=\$?; echo \$(( \$(date +%s) - t0 )) > '$state/$n.seconds'; echo \$rc > '$state/$n.rc' ) $([ $sequential = 1 ] && echo ';' || echo '& runs="$runs $!"')"
    done
    echo "wait \$runs; kill \$smi 2>/dev/null; touch '$state/finished'"
  } > "$state/launch.sh"
  echo "${names[*]}" > "$state/names"
  date +%s > "$state/started"
  setsid nohup bash "$state/launch.sh" > "$state/launch.log" 2>&1 < /dev/null &
  echo "started ${names[*]} under profile $profile$([ $sequential = 1 ] && echo ', one by one')"
fi

# wait for the runs, a line every 30 s
while [ ! -f "$state/finished" ] && [ $(( $(date +%s) - start )) -lt "$wait_s" ]; do
  sleep 5
  if [ $(( ($(date +%s) - start) % 30 )) -lt 5 ]; then
    for n in "${names[@]}"; do echo "  $n: $(tail -n 1 "$state/$n.log" 2>/dev/null)"; done
  fi
done

# pack what there is
since=$(( $(date +%s) - $(cat "$state/started") ))
summary=$state/summary.md
{ echo "# GPU notebooks, profile $profile, packed $(date -u +%FT%TZ), ${since}s after the start"
  echo; echo '```'; cat "$state/env.txt"; echo '```'; echo
  for n in "${names[@]}"; do
    if [ -f "$state/$n.rc" ]; then
      echo "- $n: rc=$(cat "$state/$n.rc"), $(cat "$state/$n.seconds") s"
    else
      echo "- $n: still running ($(tail -n 1 "$state/$n.log" 2>/dev/null))"
    fi
  done
  if [ -s "$state/gpu.csv" ]; then
    echo; echo "card: $(awk -F', ' '{u += $2; if ($3 > m) m = $3} END {printf "%d samples, mean use %.0f%%, peak memory %d MiB", NR, u / NR, m}' "$state/gpu.csv")"
  fi
  for n in "${names[@]}"; do echo; echo "## $n"; echo; echo '```'; tail -n 4 "$state/$n.log" 2>/dev/null; echo '```'; done
} > "$summary"
cat "$summary"
cp "$summary" "$OUT/"
tar czf "$OUT/notebooks.tar.gz" -C "$state" --exclude='*.part' out summary.md env.txt names \
  $(cd "$state" && ls -- *.log *.rc *.seconds gpu.csv 2>/dev/null)
echo "wrote $OUT/notebooks.tar.gz ($(du -h "$OUT/notebooks.tar.gz" | cut -f1)); this call $(( $(date +%s) - start ))s"
