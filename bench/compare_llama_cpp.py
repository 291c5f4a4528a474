#!/usr/bin/env python3
"""Our CPU prefill and decode side by side with llama.cpp's on the same weights: bench/llm_bench and llama-bench run
in turns (so that the machine's drifts hit both), `--rounds` times, medians printed. The model is the `small` preset
(hidden 768, 12 layers, 12/4 heads, FFN 2048) with a 1000-token vocabulary, in f32 and bf16, converted to GGUF by
bench/to_gguf.py. llama.cpp is not a dependency: build its llama-bench yourself (it needs only CMake) and point here.

    python3 bench/compare_llama_cpp.py --llama-cpp ~/llama.cpp [--llama-bench ~/llama.cpp/build/bin/llama-bench]
                                       [--build build/cpu] [--rounds 5] [--threads 2]
"""
import argparse
import csv
import io
import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ours(build, model, threads):
    out = subprocess.run([os.path.join(build, "bench", "llm_bench"), "--model", model], capture_output=True, text=True,
                         env=dict(os.environ, OMP_NUM_THREADS=str(threads)), check=True).stdout
    rate = lambda pattern: float(re.search(pattern + r".*? ([0-9.]+) tok/s", out, re.M).group(1))  # noqa: E731
    return {"prefill": rate(r"^prefill"), "decode": rate(r"decode \d+ steps from an empty context"),
            "decode after the prompt": rate(r"decode \d+ steps after the prompt")}


def llama(llama_bench, gguf, threads):
    out = subprocess.run([llama_bench, "-m", gguf, "-p", "512", "-n", "128", "-t", str(threads), "-o", "csv"],
                         capture_output=True, text=True, check=True).stdout
    figures = {}
    for row in csv.DictReader(io.StringIO(out)):
        figures["prefill" if int(row["n_prompt"]) > 0 else "decode"] = float(row["avg_ts"])
    return figures


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--llama-cpp", required=True, help="llama.cpp's source folder (for its gguf-py)")
    parser.add_argument("--llama-bench", help="default: <llama-cpp>/build/bin/llama-bench")
    parser.add_argument("--build", default=os.path.join(ROOT, "build", "cpu"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    llama_bench = args.llama_bench or os.path.join(args.llama_cpp, "build", "bin", "llama-bench")
    models = os.path.join(args.build, "bench-models")
    env = dict(os.environ, PYTHONPATH=os.path.join(args.llama_cpp, "gguf-py"))
    for dtype in ("f32", "bf16"):
        model = os.path.join(models, f"small-v1000-{dtype}")
        if not os.path.exists(os.path.join(model, "config.json")):
            subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_tiny_checkpoint.py"), "--preset", "small",
                            "--vocab", "1000", "--dtype", dtype, "--out", model], check=True, stdout=subprocess.DEVNULL)
        if not os.path.exists(model + ".gguf"):
            subprocess.run([sys.executable, os.path.join(ROOT, "bench", "to_gguf.py"), "--model", model, "--out",
                            model + ".gguf"], check=True, env=env)
        runs = {"ours": [], "llama.cpp": []}
        for _ in range(args.rounds):
            runs["ours"].append(ours(args.build, model, args.threads))
            runs["llama.cpp"].append(llama(llama_bench, model + ".gguf", args.threads))
        print(f"small, vocabulary 1000, {dtype}, {args.threads} threads: tokens/s, medians of {args.rounds} runs in turns"
              " (prefill: 512 tokens; decode: 128 steps from an empty context, as llama-bench -n 128)")
        for what in ("prefill", "decode", "decode after the prompt"):
            line = f"  {what:24}"
            for who, figures in runs.items():
                values = [f[what] for f in figures if what in f]
                if values:
                    line += f"  {who} {statistics.median(values):7.1f} ({min(values):.1f}-{max(values):.1f})"
            print(line)


if __name__ == "__main__":
    main()
