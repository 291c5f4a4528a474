#!/usr/bin/env bash
# Sequence-parallel prefill at S = 1, 2, 4 and tensor-parallel decode at T = 1, 2 on the `small` model (hidden 768,
# 12 layers, 12/4 heads), with the bytes each collective moves per layer per step next to the analytic volume.
#   bash bench/run_parallel_bench.sh [prompt_tokens]
set -euo pipefail
cd "$(dirname "$0")/.."
tokens=${1:-2048}
cmake --preset cpu >/dev/null && cmake --build --preset cpu >/dev/null
model=build/cpu/bench-models/small-f32
[ -f "$model/config.json" ] || python3 tools/make_tiny_checkpoint.py --preset small --dtype f32 --out "$model"
run() {  # run T S
  local ranks=$(($1 * $2)) threads=$(( $(nproc) / ($1 * $2) ))
  [ "$threads" -ge 1 ] || threads=1
  mpirun --allow-run-as-root --oversubscribe --bind-to none -x OMP_NUM_THREADS=$threads -x OMP_WAIT_POLICY=PASSIVE \
    -np "$ranks" build/cpu/bench/parallel_bench --model "$model" --tp "$1" --sp "$2" --prompt_tokens "$tokens" \
    --decode_steps 16 2>&1 | grep -v "^I "
}
for layout in "1 1" "1 2" "1 4" "2 1"; do run $layout; done
