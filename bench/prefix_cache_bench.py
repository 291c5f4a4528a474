#!/usr/bin/env python3
"""Multi-turn prefix caching (docs/prefix-caching.md): a conversation about a 16K-token document (or, with --image, a
24-tile image) asks 4 questions in turn through the OpenAI API, each turn resending the whole history, as chat
clients do. It prints each turn's TTFT with the prefix cache and without it (the same server flags but
--enable-prefix-caching=false), medians over --repeat runs that alternate the two. The goal (issue 22): from the second
turn on, TTFT at least 10 times lower with the cache, and no turn more than 3% slower than without it.

    python3 bench/prefix_cache_bench.py [--build build/cpu] [--tokens 16384] [--image] [--tp 1 --sp 1] [--repeat 3]

TTFT here is the latency of a request for one token (max_tokens 1, not streamed): template, tokens, image decoding and
the HD transform, the ViT where it runs, the prefill and the first token, as the client sees them. The model is the
demo preset with max_position_embeddings 32768 (IXC-2.5's InternLM2 ships 32768): past max_position_embeddings
dynamic NTK rotates a prompt by its length, and then no prefix of another length may be reused.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

from bench_server import ROOT, ServedJob, demo_32k_model, document, unbound_env

FIXTURES = os.path.join(ROOT, "tests", "data", "images")
QUESTIONS = ["What is this about? Answer briefly.", "Which part matters most, and why?",
             "What would you ask its author?", "Summarize it in one sentence."]
ANSWERS = ["It describes a city and its markets along the river.", "The harbour: the city grew around it.",
           "How the markets changed when the railway came."]


def first_message(args):
    if args.image:
        return {"role": "user", "content": [{"type": "image_url", "image_url": {"url": args.image_path}},
                                            {"type": "text", "text": QUESTIONS[0]}]}
    return {"role": "user", "content": document(args.tokens) + "\n\n" + QUESTIONS[0]}


def conversation(args, client):
    """Each turn's TTFT (s) and its prompt and cached positions."""
    messages = [first_message(args)]
    turns = []
    for t in range(4):
        start = time.perf_counter()
        reply = client.chat.completions.create(model="bench", messages=messages, max_tokens=1, temperature=0)
        ttft = time.perf_counter() - start
        details = reply.usage.prompt_tokens_details
        turns.append((ttft, reply.usage.prompt_tokens, details.cached_tokens if details else 0))
        if t + 1 < 4:
            messages += [{"role": "assistant", "content": ANSWERS[t]}, {"role": "user", "content": QUESTIONS[t + 1]}]
    return turns


def serve(args, caching):
    # A document needs no vision rank: then the LLM ranks take the machine's cores between them.
    vision = 1 if args.image else 0
    env = None if args.image else unbound_env(args.tp * args.sp)
    layout = ["--tp", str(args.tp), "--sp", str(args.sp), "--vision", str(vision)]
    flags = ["--model", args.model, "--allowed-media-path", FIXTURES, "--step-timeout-s", "3600"]
    if not caching:
        flags.append("--enable-prefix-caching=false")
    log = os.path.join(args.work, f"server-{'on' if caching else 'off'}.log")
    with ServedJob(args.build, layout, flags, log, env) as job:
        return conversation(args, job.client())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", default=os.path.join(ROOT, "build", "cpu"))
    parser.add_argument("--model")
    parser.add_argument("--tokens", type=int, default=16384, help="the document's length")
    parser.add_argument("--image", action="store_true", help="a conversation on dubai.png (24 tiles) instead")
    parser.add_argument("--tp", type=int, default=1)
    parser.add_argument("--sp", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    args.build = os.path.abspath(args.build)
    args.work = tempfile.mkdtemp(prefix="ixc-prefix-bench-")
    args.image_path = os.path.join(FIXTURES, "dubai.png")
    if args.image and not os.path.exists(args.image_path):
        sys.exit(f"{args.image_path}: missing")
    args.model = args.model or demo_32k_model(args.build)
    runs = {True: [], False: []}
    for r in range(args.repeat):
        for caching in (False, True) if r % 2 == 0 else (True, False):
            runs[caching].append(serve(args, caching))
            print(f"run {r + 1}, cache {'on ' if caching else 'off'}: " +
                  "  ".join(f"{ttft * 1000:8.1f} ms" for ttft, _, _ in runs[caching][-1]), flush=True)
    subject = "a 24-tile image (dubai.png)" if args.image else f"a document of about {args.tokens} tokens"
    print(f"\n4 questions in turn about {subject}, T{args.tp}S{args.sp} V{1 if args.image else 0}, demo model, "
          f"CPU ({os.cpu_count()} cores), median of {args.repeat}")
    print("turn  prompt  cached      TTFT off       TTFT on    off / on   on vs off")
    for t in range(4):
        off = statistics.median(run[t][0] for run in runs[False])
        on = statistics.median(run[t][0] for run in runs[True])
        prompt, cached = runs[True][0][t][1], runs[True][0][t][2]
        print(f"{t + 1:4d}  {prompt:6d}  {cached:6d}  {off * 1000:9.1f} ms  {on * 1000:9.1f} ms  {off / on:8.1f}x  "
              f"{(on / off - 1) * 100:+7.1f}%")


if __name__ == "__main__":
    main()
