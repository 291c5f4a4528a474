#!/usr/bin/env bash
# Nsight Compute's view of one flash prefill launch at 8K tokens (kernels_cuda_bench flash, 32 heads over 8 KV heads,
# head dim 128): throughput against the tensor pipes and shared memory, issue slots, occupancy and where warps
# stall; first the wgmma kernel (sm_90), then the mma.sync one that IXC_FALLBACK_KERNELS=1 picks. On the GPU machine, with
# .gpu-bin carried (about a minute):
#   bash tests/gpu/profile_flash.sh
# Nsight Compute locks the clocks (near 1.4 GHz on an H200), so its durations run longer than the benchmark's.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/gpu/bundle_env.sh
ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
sections=(--section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis
  --section Occupancy --section SchedulerStats --section WarpStateStats)
for fallback in 0 1; do
  echo "== flash prefill at 8K tokens, IXC_FALLBACK_KERNELS=$fallback"
  # The bench launches flash 7 times at 2K (2 warm-up, 5 timed), so the 8th is 8K's first.
  IXC_FALLBACK_KERNELS=$fallback "$ncu" "${sections[@]}" -k regex:Flash --launch-skip 7 --launch-count 1 \
    .gpu-bin/kernels_cuda_bench flash
done
