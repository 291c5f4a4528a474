#!/usr/bin/env bash
# Builds the `fuzz` preset (clang, libFuzzer, ASan, UBSan) and runs each fuzz target for a while on seeds from
# tests/data: what the coordinator reads from users (request lines, images, videos) and from disk (safetensors
# headers). A finding stops its target and is kept under build/fuzz/findings (rerun one: build/fuzz/tests/fuzz/TARGET
# FILE). Not part of tests/run.sh: a run finds different inputs each time.
#   bash tests/fuzz/run.sh [SECONDS_PER_TARGET (default 60)] [TARGET ...]
set -uo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(request_fuzz image_fuzz video_fuzz safetensors_fuzz)
if ! command -v clang++ >/dev/null; then
  echo "tests/fuzz/run.sh needs clang with libFuzzer: apt-get install clang libclang-rt-dev libomp-dev" >&2
  exit 2
fi
cmake --preset fuzz >/dev/null && cmake --build --preset fuzz || exit 1

work=build/fuzz/run
rm -rf "$work"
mkdir -p "$work" build/fuzz/findings
# Seeds: small real inputs of each kind.
mkdir -p "$work/image_fuzz" "$work/video_fuzz" "$work/safetensors_fuzz" "$work/request_fuzz"
find tests/data/images/synthetic tests/data/images/bad -type f -size -40k -exec cp {} "$work/image_fuzz/" \;
find tests/data/videos -type f -size -100k -exec cp {} "$work/video_fuzz/" \;
split -l 1 deploy/examples/requests.jsonl "$work/request_fuzz/line_"
python3 - "$work/safetensors_fuzz" <<'PY'
import json, struct, sys
def write(name, header, data):
    text = json.dumps(header).encode()
    open(f"{sys.argv[1]}/{name}", "wb").write(struct.pack("<Q", len(text)) + text + data)
write("two", {"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
              "b": {"dtype": "BF16", "shape": [3], "data_offsets": [16, 22]}, "__metadata__": {"format": "pt"}},
      bytes(range(24)))
write("scalar", {"x": {"dtype": "F16", "shape": [], "data_offsets": [0, 2]}}, bytes(2))
PY

failures=0
for target in "${targets[@]}"; do
  echo "== $target: ${seconds} s"
  dict=tests/fuzz/${target%_fuzz}.dict
  "build/fuzz/tests/fuzz/$target" $([ -f "$dict" ] && echo "-dict=$dict") -max_total_time="$seconds" -timeout=30 -rss_limit_mb=4096 -max_len=100000 \
    -artifact_prefix="build/fuzz/findings/${target}-" -print_final_stats=1 "$work/$target" >"$work/$target.log" 2>&1
  rc=$?
  grep -E "^stat::number_of_executed_units|^stat::new_units_added" "$work/$target.log"
  if [ $rc -ne 0 ]; then
    failures=$((failures + 1))
    grep -aE "ERROR|runtime error|SUMMARY|Test unit written" "$work/$target.log" | head -20
  fi
done
echo "fuzz run: $failures of ${#targets[@]} targets found something"
exit $((failures > 0))
