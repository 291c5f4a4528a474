#!/usr/bin/env bash
# Where one ViT pass (8 crops of the HD-25 image in vision_cuda_bench, random weights) spends its GPU time, kernel by
# kernel: Nsight Compute's duration of every launch from one pass's patch columns to the next's. On the GPU machine,
# with .gpu-bin carried (a minute or two):
#   bash tests/gpu/profile_vision_pass.sh
# Nsight Compute locks the clocks (near 1.4 GHz on an H200), so its durations run longer than the benchmark's.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/gpu/bundle_env.sh
ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
csv=$(mktemp)
trap 'rm -f "$csv"' EXIT
# A pass is about 24 layers x 15 launches; the limits before it, under 100.
"$ncu" --metrics gpu__time_duration.sum --csv --launch-count 1200 .gpu-bin/vision_cuda_bench >"$csv"
python3 tests/gpu/kernel_table.py "$csv" PatchColumnsKernel "one ViT pass of 8 crops"
