#!/usr/bin/env bash
# The main job on the built-in demo model: builds ixc-cluster, writes the demo model (a seeded random IXC-2.5
# checkpoint at small size, with the real IXC-2.5 tokenizer), starts the cluster as an OpenAI-compatible server under
# mpirun (1 coordinator, 1 vision rank, 2 tensor-parallel LLM ranks), streams an answer with curl, asks about an
# image with the official openai client, makes a webpage from a screenshot (a composition task), and stops the server
# with SIGTERM (it drains and exits 0). The weights are random, so the text is too: this shows the whole path
# working, not the model's quality. Point --model at a real checkpoint for that (docs/serving.md).
#   bash deploy/demo.sh [PORT]
set -euo pipefail
cd "$(dirname "$0")/.."
port=${1:-8000}
cmake --preset cpu >/dev/null
cmake --build --preset cpu
model=build/cpu/demo-model
python3 tools/make_tiny_checkpoint.py --preset demo --dtype bf16 --tokenizer tests/data/tokenizer.model --out "$model"

echo "== 1. the cluster server: deploy/launch.sh --tp 2 --sp 1 --vision 1 -- --serve --port $port"
deploy/launch.sh --tp 2 --sp 1 --vision 1 -- --model "$model" --serve --port "$port" \
  --served-model-name ixc-demo > build/cpu/demo-server.log 2>&1 &
job=$!
stop() { pkill -TERM -P "$job" -f ixc-coordinator; wait "$job"; }  # the coordinator, not mpirun
trap 'kill $job 2>/dev/null || true' EXIT
until curl -sf "http://127.0.0.1:$port/health" >/dev/null; do
  kill -0 "$job" 2>/dev/null || { cat build/cpu/demo-server.log; exit 1; }
  sleep 0.5
done
echo "   ready on http://127.0.0.1:$port/v1 (log: build/cpu/demo-server.log)"

echo "== 2. a streamed answer with curl"
curl -sN "http://127.0.0.1:$port/v1/chat/completions" -H "Content-Type: application/json" -d '{
  "model": "ixc-demo", "stream": true, "max_tokens": 16, "temperature": 0.8, "top_p": 0.8, "seed": 1,
  "messages": [{"role": "user", "content": "Describe the skyline of Dubai at night."}]}'

echo "== 3. an image question with the openai client"
python3 deploy/examples/ask_image.py "http://127.0.0.1:$port/v1" tests/data/images/cars1.jpg "What is in the picture?"

echo "== 4. a webpage from a screenshot: IXC-2.5's screen_2_webpage (2 beams, web LoRA; docs/composition.md)"
python3 deploy/examples/compose.py "http://127.0.0.1:$port/v1" screen_2_webpage \
  --image tests/data/images/screenshot.jpg --max-tokens 24

echo "== 5. SIGTERM: the server drains and the job exits"
stop
trap - EXIT
echo "   exit 0"
