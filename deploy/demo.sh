#!/usr/bin/env bash
# Builds ixc-cluster, writes the built-in demo model (a seeded random IXC-2.5 checkpoint at small size, with the
# real IXC-2.5 tokenizer) and generates from it. The weights are random, so the text is too: this shows the whole
# path working, not the model's quality. Point --model at a real checkpoint directory for that.
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
