#!/usr/bin/env bash
# Where the GPU time of one unit of work goes, kernel by kernel: Nsight Compute's duration of every launch from one
# launch of the unit's first kernel to its next (tests/gpu/kernel_table.py), summed by kernel. On the GPU machine,
# with .gpu-bin carried (a minute or two each):
#   bash tests/gpu/profile_kernels.sh decode    one batch-1 decode step of the 7B shape (model_cuda_bench, launched
#                                               kernel by kernel), from embedding gather to embedding gather: how
#                                               the decode bottlenecks in docs/architecture.md were found
#   bash tests/gpu/profile_kernels.sh prefill   one 32K-token prefill of the 7B shape (model_cuda_bench 32768 prefill)
#   bash tests/gpu/profile_kernels.sh vision    one ViT pass of 8 crops (vision_cuda_bench), from patch columns to
#                                               patch columns
# Nsight Compute locks the clocks (near 1.4 GHz on an H200), so its durations run longer than the benchmarks'.
set -euo pipefail
cd "$(dirname "$0")/../.."
unit=${1:-}
case "$unit" in
  # 1200 launches cover the limits, the weights' fill and the 512-token prefill; 700 then hold a whole step.
  decode)
    window=(--launch-skip 1200 --launch-count 700) command=(.gpu-bin/model_cuda_bench) first=GatherKernel
    title="one decode step"
    ;;
  # The limits, the weights' fill and one prefill come to well under 1500 launches.
  prefill)
    window=(--launch-count 1500) command=(.gpu-bin/model_cuda_bench 32768 prefill) first=GatherKernel
    title="one 32K-token prefill"
    ;;
  # A pass is about 24 layers x 15 launches; the limits before it, under 100.
  vision)
    window=(--launch-count 1200) command=(.gpu-bin/vision_cuda_bench) first=PatchColumnsKernel
    title="one ViT pass of 8 crops"
    ;;
  *)
    echo "usage: $0 decode|prefill|vision" >&2
    exit 2
    ;;
esac
source tests/gpu/bundle_env.sh
ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
csv=$(mktemp)
trap 'rm -f "$csv"' EXIT
"$ncu" --metrics gpu__time_duration.sum --csv "${window[@]}" "${command[@]}" >"$csv"
python3 tests/gpu/kernel_table.py "$csv" "$first" "$title"
