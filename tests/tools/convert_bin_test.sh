#!/usr/bin/env bash
# The .bin converter round trip: a golden checkpoint saved as PyTorch .bin shards, converted back, must give the
# same logits through ixc-generate. Needs torch and safetensors; without them the test reports itself skipped (77).
#   tests/tools/convert_bin_test.sh BUILD_DIR GOLDEN_MODELS_DIR
set -euo pipefail
build=$1 models=$2
python3 -c "import torch, safetensors" 2>/dev/null || { echo "torch or safetensors missing: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
root=$(cd "$(dirname "$0")/../.." && pwd)
python3 - "$models/gqa4_bf16" "$tmp/bin" <<'PY'
import json, os, shutil, sys, torch
from safetensors.torch import load_file
src, dst = sys.argv[1], sys.argv[2]
os.makedirs(dst)
index = json.load(open(os.path.join(src, "model.safetensors.index.json")))
weight_map = {}
for shard in sorted(set(index["weight_map"].values())):
    out = shard.replace("model", "pytorch_model", 1).replace(".safetensors", ".bin")
    torch.save(load_file(os.path.join(src, shard)), os.path.join(dst, out))
    weight_map.update({name: out for name, f in index["weight_map"].items() if f == shard})
json.dump({"weight_map": weight_map}, open(os.path.join(dst, "pytorch_model.bin.index.json"), "w"))
shutil.copyfile(os.path.join(src, "config.json"), os.path.join(dst, "config.json"))
PY
# The .bin directory itself is refused with a pointer to the converter.
if "$build/tools/ixc-generate" --model "$tmp/bin" --prompt-ids 1,2 2>"$tmp/err"; then exit 1; fi
grep -q convert_bin_to_safetensors "$tmp/err"
python3 "$root/tools/convert_bin_to_safetensors.py" "$tmp/bin" "$tmp/converted" >/dev/null
for dir in "$models/gqa4_bf16" "$tmp/converted"; do
  "$build/tools/ixc-generate" --model "$dir" --prompt-ids 1,5,7,9,11 --max-new-tokens 4 --ignore-eos \
    --dump-logits "$tmp/$(basename "$dir").npy" 2>/dev/null | grep "generated ids" >>"$tmp/ids"
done
cmp "$tmp/gqa4_bf16.npy" "$tmp/converted.npy"
[ "$(sort -u "$tmp/ids" | wc -l)" -eq 1 ]
echo "converted checkpoint gives identical logits"
