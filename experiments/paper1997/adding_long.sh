#!/usr/bin/env bash
# The adding-problem rows too long for 2 cores (docs/results.md), as run on a GPU machine
# with 16 CPU cores. GPU_JOBS: one process per row/model, its ten trials side by side on the
# GPU. CPU_JOBS: row/model/first/end, one trial (seed) per CPU core, cores handed out in turn
# from FIRST_CORE (a trial of the small networks is latency-bound: one core runs it about as
# fast as a GPU). Each process stops at its budget, when its trials have stopped, or at the
# wall-clock cap (unstopped trials then count as not stopped; the table says how far they ran).
#   OUT=results MAX_SECONDS=450 PYTHON=python3 bash experiments/paper1997/adding_long.sh
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
export PYTHONPATH="$HERE/../../src" PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
PYTHON=${PYTHON:-python3}
MAX_SECONDS=${MAX_SECONDS:-450}
GPU_JOBS=${GPU_JOBS:-"adding1000/gated adding1000/lstm adding1000/attention:inf adding500/lstm adding500/attention:inf"}
CPU_JOBS=${CPU_JOBS:-"adding500/gated/0/10"}
FIRST_CORE=${FIRST_CORE:-2}  # cores below it are left to the GPU processes' host threads
mkdir -p "$OUT"
for job in $GPU_JOBS; do
  row=${job%%/*} model=${job#*/}
  "$PYTHON" "$HERE/run.py" --rows "$row" --models "$model" --max-seconds "$MAX_SECONDS" \
    --jsonl "$OUT/$row-${model//:/-}-gpu.jsonl" >>"$OUT/log.txt" 2>&1 &
done
core=$FIRST_CORE
for job in $CPU_JOBS; do
  IFS=/ read -r row model first end <<<"$job"
  for seed in $(seq "$first" $((end - 1))); do
    JAX_PLATFORMS=cpu XLA_FLAGS="--xla_cpu_multi_thread_eigen=false" taskset -c "$core" \
      "$PYTHON" "$HERE/run.py" --rows "$row" --models "$model" --seeds "$seed:$((seed + 1))" \
      --max-seconds "$MAX_SECONDS" --jsonl "$OUT/$row-${model//:/-}-cpu.jsonl" \
      >>"$OUT/log.txt" 2>&1 &
    core=$(((core + 1) % $(nproc)))
  done
done
wait
"$PYTHON" "$HERE/run.py" --merge "$OUT"/*.jsonl --out "$OUT/table.md"
