#!/usr/bin/env bash
# The adding problem at T = 500 and 1000 (docs/results.md), as run on a lent GPU machine with
# 16 CPU cores: T = 1000's ten trials side by side on the GPU, T = 500's ten trials one per CPU
# core (a trial of this small network is latency-bound: one core runs it about as fast as a GPU).
# Each part stops at its budget, when every trial has stopped, or at the wall-clock cap.
#   OUT=results MAX_SECONDS=450 PYTHON=python3 bash benchmarks/adding_long.sh
#   python benchmarks/paper1997.py --merge results/*.jsonl
set -u
cd "$(dirname "$0")"
export PYTHONPATH=../src PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
PYTHON=${PYTHON:-python3}
MAX_SECONDS=${MAX_SECONDS:-450}
mkdir -p "$OUT"
one_core() {  # one trial on one core, no GPU
  JAX_PLATFORMS=cpu XLA_FLAGS="--xla_cpu_multi_thread_eigen=false" taskset -c "$1" \
    "$PYTHON" paper1997.py --rows "$2" --seeds "$3:$(($3 + 1))" --max-seconds "$MAX_SECONDS" \
    --jsonl "$OUT/$4.jsonl" >>"$OUT/log.txt" 2>&1
}
"$PYTHON" paper1997.py --rows adding1000 --max-seconds "$MAX_SECONDS" \
  --jsonl "$OUT/adding1000-gpu.jsonl" >>"$OUT/log.txt" 2>&1 &
for seed in $(seq 0 9); do one_core $((seed + 1)) adding500 "$seed" adding500 & done
# Spare cores: T = 1000's first trials again on CPU, a fallback should the GPU part be capped.
for seed in $(seq 0 4); do one_core $((seed + 11)) adding1000 "$seed" adding1000-cpu & done
wait
"$PYTHON" paper1997.py --merge "$OUT"/adding500.jsonl "$OUT"/adding1000-gpu.jsonl
"$PYTHON" paper1997.py --merge "$OUT"/adding1000-cpu.jsonl
