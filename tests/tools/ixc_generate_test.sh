#!/usr/bin/env bash
# ixc-generate end to end: the dumped logits equal the transformers golden, greedy ids match, and bad input
# (missing directory, bad flag values, a prompt past the context, a text prompt without tokenizer) exits non-zero
# with a message naming the problem.
#   tests/tools/ixc_generate_test.sh BUILD_DIR GOLDEN_MODELS_DIR
set -u
build=$1 models=$2
bin=$build/tools/ixc-generate
golden=$(dirname "$0")/../data/golden/tiny_f32
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# expect_error "what" "message substring" args...
expect_error() {
  local what=$1 pattern=$2
  shift 2
  if "$bin" "$@" >"$tmp/out" 2>"$tmp/err"; then
    fail "$what: exited 0"
  elif ! grep -qF -- "$pattern" "$tmp/err"; then
    fail "$what: stderr lacks '$pattern':"; cat "$tmp/err"
  fi
}

ids=$(python3 -c "import numpy as np; print(','.join(map(str, np.load('$golden/prompt_ids.npy'))))")
greedy=$(python3 -c "import numpy as np; print(','.join(map(str, np.load('$golden/greedy_ids.npy'))))")
"$bin" --model "$models/tiny_f32" --prompt-ids "$ids" --max-new-tokens 12 --ignore-eos \
  --dump-logits "$tmp/logits.npy" >"$tmp/out" 2>"$tmp/err" || { fail "golden run exited non-zero"; cat "$tmp/err"; }
grep -qx "generated ids: $greedy" "$tmp/out" || { fail "greedy ids differ from transformers"; cat "$tmp/out"; }
python3 - "$tmp/logits.npy" "$golden/logits.npy" <<'PY' || fail "dumped logits differ from transformers"
import sys, numpy as np
ours, theirs = np.load(sys.argv[1]), np.load(sys.argv[2])
assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
error = np.abs(ours - theirs).max()
print(f"max |logit error| {error:.2e}")
assert error <= 1e-4
PY

# Sampling is seeded: the same seed gives the same tokens.
sample() { "$bin" --model "$models/tiny_f32" --prompt-ids "$ids" --max-new-tokens 8 --temperature 0.9 --top-p 0.8 \
  --top-k 40 --repetition-penalty 1.1 --seed "$1" --ignore-eos 2>/dev/null | grep "generated ids"; }
[ "$(sample 7)" = "$(sample 7)" ] || fail "same seed, different tokens"

expect_error "missing model" "/nonexistent: model directory does not exist" --model /nonexistent --prompt-ids 1
expect_error "no prompt" "give one of --prompt and --prompt-ids" --model "$models/tiny_f32"
expect_error "bad id list" "'x' is not an integer" --model "$models/tiny_f32" --prompt-ids 1,x
expect_error "id past vocab" "token id 512" --model "$models/tiny_f32" --prompt-ids 1,512
expect_error "prompt past context" "the prompt has 3 tokens; the context holds 3" \
  --model "$models/tiny_f32" --prompt-ids 1,2,3 --max-context 3
expect_error "no tokenizer" "--prompt and --task need a tokenizer" --model "$models/tiny_f32" --prompt "hello"
expect_error "bad lora mode" "unknown LoRA mode 'poem'" --model "$models/tiny_f32" --prompt-ids 1 --lora-mode poem
expect_error "lora absent" "lora_web" --model "$models/internlm2_bias_linear_rope" --prompt-ids 1 --lora-mode web
expect_error "bad top-p" "--top-p must be in (0, 1]" --model "$models/tiny_f32" --prompt-ids 1 --top-p 0
expect_error "bad device" "--device must be cpu or cuda, not 'tpu'" --model "$models/tiny_f32" --prompt-ids 1 \
  --device tpu
expect_error "bad cuda dtype" "--dtype must be bf16 or f16 on cuda" --model "$models/tiny_f32" --prompt-ids 1 \
  --device cuda --dtype f32
# --device cuda here (no GPU): the CPU build says it has no CUDA backend, the cuda build that no device is usable.
if "$bin" --model "$models/tiny_f32" --prompt-ids 1 --device cuda >"$tmp/out" 2>"$tmp/err"; then
  nvidia-smi >/dev/null 2>&1 || fail "--device cuda without a GPU exited 0"
elif ! grep -qE "this build has no CUDA backend|no CUDA device is usable" "$tmp/err"; then
  fail "--device cuda: unclear message:"; cat "$tmp/err"
fi
cp -r "$models/tiny_f32" "$tmp/broken"
truncate -s 1000 "$tmp/broken/model-00002-of-00002.safetensors"
expect_error "truncated shard" "model-00002-of-00002.safetensors" --model "$tmp/broken" --prompt-ids 1

expect_error "beams that sample" "beam search does not sample" --model "$models/tiny_f32" --prompt-ids 1 \
  --num-beams 2 --temperature 0.7
expect_error "no beams" "--num-beams must be in [1, 16]" --model "$models/tiny_f32" --prompt-ids 1 --num-beams 0

# The composition tasks (coordinator/compose_task.h), on a tiny model with the real tokenizer: a task is its
# reference function's prompt and settings (write_webpage: the instruction as a plain chat turn, web LoRA, 2 beams,
# repetition penalty 3.0), so it gives the ids those flags give; the page comes without turn markers.
python3 "$(dirname "$0")/../../tools/make_tiny_checkpoint.py" --preset tiny-kv4 --vocab 92544 --dtype bf16 \
  --max-position-embeddings 4096 --tokenizer "$(dirname "$0")/../data/tokenizer.model" --out "$tmp/chat" >/dev/null
inst="A website for Research institutions. The name is Shanghai AI lab."
"$bin" --model "$tmp/chat" --task write_webpage --prompt "$inst" --max-new-tokens 10 >"$tmp/task" 2>"$tmp/err" ||
  { fail "write_webpage exited non-zero"; cat "$tmp/err"; }
"$bin" --model "$tmp/chat" --chat --prompt "$inst" --lora-mode web --num-beams 2 --repetition-penalty 3.0 \
  --max-new-tokens 10 >"$tmp/flags" 2>/dev/null
[ "$(grep 'generated ids' "$tmp/task")" = "$(grep 'generated ids' "$tmp/flags")" ] ||
  fail "write_webpage differs from its settings given as flags"
grep -q "^text: " "$tmp/task" && ! grep -q "UNUSED_TOKEN" "$tmp/task" || fail "write_webpage: no clean text"
"$bin" --model "$tmp/chat" --task resume_2_webpage --prompt "$(cat "$(dirname "$0")/../data/resume.md")" \
  --max-new-tokens 6 >"$tmp/resume" 2>"$tmp/err" || { fail "resume_2_webpage exited non-zero"; cat "$tmp/err"; }
grep -q "^script pass ids: " "$tmp/resume" || fail "resume_2_webpage ran no second pass"
"$bin" --model "$tmp/chat" --task screen_2_webpage --image "$(dirname "$0")/../data/images/screenshot.jpg" \
  --max-new-tokens 4 >"$tmp/screen" 2>"$tmp/err" || { fail "screen_2_webpage exited non-zero"; cat "$tmp/err"; }
expect_error "screenshot missing" "--task screen_2_webpage takes one --image" --model "$tmp/chat" \
  --task screen_2_webpage
expect_error "unknown task" "'poem' is not a task" --model "$tmp/chat" --task poem --prompt hi

[ "$failures" -eq 0 ] && echo "ixc-generate: all checks passed"
exit "$failures"
