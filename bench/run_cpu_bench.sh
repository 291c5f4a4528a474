#!/usr/bin/env bash
# The CPU benchmarks: GEMM at the model's shapes; prefill (512-token prompt) and decode of the `small` config
# (hidden 768, 12 layers, 12 heads, 4 KV heads, FFN 2048, the real 92,544 vocabulary) in f32 and bf16; the vision
# stage (preprocessing milliseconds, ViT tiles per second). 2 threads. Models are generated under
# build/cpu/bench-models.
#   bash bench/run_cpu_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
cmake --preset cpu >/dev/null && cmake --build --preset cpu >/dev/null
build/cpu/bench/gemm_bench
for dtype in f32 bf16; do
  model=build/cpu/bench-models/small-$dtype
  [ -f "$model/config.json" ] || python3 tools/make_tiny_checkpoint.py --preset small --dtype "$dtype" --out "$model"
  build/cpu/bench/llm_bench --model "$model" --prompt_tokens 512 --decode_tokens 128 2>&1 | grep -v "^I "
done
build/cpu/bench/vision_bench
