#!/usr/bin/env bash
# Where a 32K-token prefill of the 7B shape (model_cuda_bench 32768 prefill, random weights) spends its GPU time,
# kernel by kernel: Nsight Compute's duration of every launch from the first prefill's embedding gather to the
# second's. On the GPU machine, with .gpu-bin carried (a minute or two):
#   bash tests/gpu/profile_prefill.sh
# Nsight Compute locks the clocks (near 1.4 GHz on an H200), so its durations run longer than the benchmark's.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/gpu/bundle_env.sh
ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
csv=$(mktemp)
trap 'rm -f "$csv"' EXIT
# The limits, the weights' fill and one prefill come to well under 1500 launches.
"$ncu" --metrics gpu__time_duration.sum --csv --launch-count 1500 .gpu-bin/model_cuda_bench 32768 prefill >"$csv"
python3 tests/gpu/kernel_table.py "$csv" GatherKernel "one 32K-token prefill"
