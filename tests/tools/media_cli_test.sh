#!/usr/bin/env bash
# ixc-generate with --image / --video and ixc-preprocess, end to end: token counts of the spec, vision embeddings
# equal to the reference's, and clear errors (naming the file) for inputs that are not images or videos.
#   tests/tools/media_cli_test.sh BUILD_DIR GOLDEN_MODELS_DIR
set -u
build=$1 models=$2
root=$(cd "$(dirname "$0")/../.." && pwd)
generate=$build/tools/ixc-generate preprocess=$build/tools/ixc-preprocess
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
expect_error() {  # expect_error WHAT PATTERN COMMAND...
  local what=$1 pattern=$2
  shift 2
  if "$@" >"$tmp/out" 2>"$tmp/err"; then fail "$what: exited 0"; return; fi
  grep -qF -- "$pattern" "$tmp/err" || { fail "$what: stderr lacks '$pattern':"; cat "$tmp/err"; }
}
json_field() { python3 -c "import json,sys; print(json.load(open('$1'))$2)"; }

# Token counts: dubai.png at hd_num 24 is an 8 x 3 grid; the 32-frame video a 20 x 1 strip, 8,821 tokens (spec 4).
"$preprocess" --image "$root/tests/data/images/dubai.png" >"$tmp/dubai.json" || fail "preprocess dubai"
[ "$(json_field "$tmp/dubai.json" "['grid']")" = "[8, 3]" ] || fail "dubai grid: $(cat "$tmp/dubai.json")"
[ "$(json_field "$tmp/dubai.json" "['tokens']")" = "10181" ] || fail "dubai tokens"
"$preprocess" --video "$root/tests/data/videos/many_frames.mkv" >"$tmp/video.json" || fail "preprocess video"
[ "$(json_field "$tmp/video.json" "['tokens']")" = "8821" ] || fail "video tokens: $(cat "$tmp/video.json")"

# The vision embeddings of the one-image golden, from the command line.
"$preprocess" --image "$root/tests/data/images/cars1.jpg" --model "$models/multimodal_one_image" \
  --dump-vision-embeds "$tmp/embeds.npy" --dump-pixels "$tmp/pixels.npy" >/dev/null || fail "dump embeddings"
python3 - "$tmp/embeds.npy" "$root/tests/data/golden/multimodal/one_image/image_embeds_0.npy" "$tmp/pixels.npy" <<'PY' ||
import sys, numpy as np
ours, theirs = np.load(sys.argv[1]), np.load(sys.argv[2])
assert ours.shape == theirs.shape and np.abs(ours - theirs).max() <= 1e-4, (ours.shape, theirs.shape)
assert np.load(sys.argv[3]).shape == (25, 3, 56, 56)
PY
  fail "vision embeddings differ from the reference"

# Text + images + video through ixc-generate, on a tiny model with the real tokenizer.
python3 "$root/tools/make_tiny_checkpoint.py" --preset tiny --vocab 92544 --dtype bf16 \
  --tokenizer "$root/tests/data/tokenizer.model" --out "$tmp/model" >/dev/null
"$generate" --model "$tmp/model" --chat --prompt "Compare <ImageHere> with <ImageHere>, then <ImageHere>." \
  --image "$root/tests/data/images/cars1.jpg" --image "$root/tests/data/images/dubai.png" \
  --video "$root/tests/data/videos/portrait.webm" --max-new-tokens 4 >"$tmp/out" 2>"$tmp/err" ||
  { fail "image + video generation"; cat "$tmp/err"; }
grep -q "^prompt positions: .* vision)" "$tmp/out" || fail "no vision positions reported"

expect_error "missing image" "/nonexistent.jpg: cannot open" \
  "$generate" --model "$tmp/model" --prompt "x" --image /nonexistent.jpg
expect_error "text as image" "README.md: not an image" \
  "$generate" --model "$tmp/model" --prompt "x" --image "$root/README.md"
expect_error "placeholders" "2 <ImageHere> placeholders for 1 images" \
  "$generate" --model "$tmp/model" --prompt "<ImageHere> <ImageHere>" --image "$root/tests/data/images/cars1.jpg"
expect_error "ids with image" "need a text --prompt" \
  "$generate" --model "$tmp/model" --prompt-ids 1,2 --image "$root/tests/data/images/cars1.jpg"
expect_error "audio only" "audio_only.mka: has no video stream" \
  "$preprocess" --video "$root/tests/data/videos/audio_only.mka"
expect_error "pixel limit" "more than the limit of 1000" \
  "$preprocess" --image "$root/tests/data/images/cars1.jpg" --max-image-pixels 1000
expect_error "nothing" "exactly one of --image and --video" "$preprocess"
expect_error "embeds without model" "needs --model" \
  "$preprocess" --image "$root/tests/data/images/cars1.jpg" --dump-vision-embeds "$tmp/x.npy"

[ "$failures" -eq 0 ] && echo "media tools: all checks passed"
exit "$failures"
