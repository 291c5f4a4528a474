#!/usr/bin/env bash
# Where one batch-1 decode step of the 7B shape (model_cuda_bench, random weights, launched kernel by kernel) spends
# its GPU time, kernel by kernel: Nsight Compute's duration of every launch in a window after the prompt's prefill,
# summed between two embedding gathers (one step). This is how the decode bottlenecks in docs/architecture.md were
# found. On the GPU machine, with .gpu-bin carried (about a minute):
#   bash tests/gpu/profile_decode_step.sh
# Nsight Compute locks the clocks (near 1.4 GHz on an H200), so its durations run longer than the benchmark's.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/gpu/bundle_env.sh
ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
csv=$(mktemp)
trap 'rm -f "$csv"' EXIT
# 1200 launches cover the limits, the weights' fill and the 512-token prefill; 700 then hold at least one full step.
"$ncu" --metrics gpu__time_duration.sum --csv --launch-skip 1200 --launch-count 700 .gpu-bin/model_cuda_bench >"$csv"
python3 tests/gpu/kernel_table.py "$csv" GatherKernel "one decode step"
