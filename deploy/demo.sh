#!/usr/bin/env bash
# Builds ixc-cluster, writes the built-in demo model (a seeded random IXC-2.5 checkpoint at small size, with the
# real IXC-2.5 tokenizer), generates from it on one process, then runs the cluster job under mpirun (1 coordinator,
# 1 vision rank, 2 tensor-parallel LLM ranks) on deploy/examples/requests.jsonl. The weights are random, so the text
# is too: this shows the whole path working, not the model's quality. Point --model at a real checkpoint for that.
#   bash deploy/demo.sh ["your prompt"]
set -euo pipefail
cd "$(dirname "$0")/.."
prompt=${1:-"Describe the skyline of Dubai at night."}
cmake --preset cpu >/dev/null
cmake --build --preset cpu
model=build/cpu/demo-model
python3 tools/make_tiny_checkpoint.py --preset demo --dtype bf16 --tokenizer tests/data/tokenizer.model --out "$model"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
set -x
build/cpu/tools/ixc-generate --model "$model" --chat --use-meta --prompt "$prompt" \
  --max-new-tokens 24 --temperature 0.8 --top-p 0.8 --seed 1
build/cpu/tools/ixc-generate --model "$model" --chat --prompt "Describe the two cars: <ImageHere> <ImageHere>" \
  --image tests/data/images/cars1.jpg --image tests/data/images/cars2.jpg --max-new-tokens 16
build/cpu/tools/ixc-generate --model "$model" --chat --prompt "Here are some frames of a video. Describe this video." \
  --video tests/data/videos/landscape.mp4 --max-new-tokens 16
set +x
echo "== the cluster: deploy/launch.sh --tp 2 --sp 1 --vision 1"
deploy/launch.sh --tp 2 --sp 1 --vision 1 -- --model "$model" --requests deploy/examples/requests.jsonl \
  --results build/cpu/demo-results.jsonl
cat build/cpu/demo-results.jsonl
