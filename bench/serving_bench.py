#!/usr/bin/env python3
"""The serving benchmark, in the manner of vLLM's benchmark_serving: a mix of chats, image questions and long
documents sent to the cluster's OpenAI API at a given concurrency (or request rate), streaming; it prints request
and output-token throughput and TTFT and inter-token latency at p50, p90 and p99. Then the same requests through the
offline engine (ixc-coordinator --requests, all arriving at once), whose throughput is what serving costs against.

    python3 bench/serving_bench.py [--build build/cpu] [--model DIR] [--requests 32] [--concurrency 32]
                                   [--rate REQ_PER_S] [--tp 2 --sp 1 --vision 1] [--output-tokens 32] [--repeat 3]

Without --model it writes the demo model (tools/make_tiny_checkpoint.py --preset demo) under the build folder.
"""
import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time

import httpx

from bench_server import ROOT, ServedJob, demo_model

IMAGES = os.path.join(ROOT, "tests", "data", "images")


def workload(count, output_tokens):
    """(chat messages for the API, the same request as an offline JSONL line), in a fixed mix."""
    rng = random.Random(0)
    document = " ".join(f"Section {i}: the city grew along the river and its markets traded spices." for i in range(60))
    items = []
    for i in range(count):
        kind = ("chat", "image", "document")[i % 3]
        if kind == "chat":
            text = f"Write a short story about the car number {rng.randint(1, 999)}."
            messages = [{"role": "user", "content": text}]
            line = {"prompt": text, "chat": True}
        elif kind == "image":
            image = os.path.join(IMAGES, f"cars{1 + i % 3}.jpg")
            text = "What is in the picture?"
            messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": image}},
                                                     {"type": "text", "text": text}]}]
            line = {"prompt": text, "chat": True, "images": [image]}
        else:
            text = f"Summarize this report ({i}): {document}"
            messages = [{"role": "user", "content": text}]
            line = {"prompt": text, "chat": True}
        line.update(id=str(i), max_new_tokens=output_tokens, ignore_eos=True)
        items.append((messages, line))
    return items


def percentiles(values):
    values = sorted(values)
    if not values:
        return "n/a"
    pick = lambda q: values[min(len(values) - 1, int(q * len(values)))]  # noqa: E731
    return f"p50 {pick(0.5) * 1000:7.1f} ms   p90 {pick(0.9) * 1000:7.1f} ms   p99 {pick(0.99) * 1000:7.1f} ms"


def serve(args, items, run):
    """One served run: an asyncio client on one thread (as vLLM's benchmark_serving), which reads the SSE lines itself:
    on these 2 cores the client shares the machine with the ranks, so it must cost little."""
    layout = ["--tp", str(args.tp), "--sp", str(args.sp), "--vision", str(args.vision)]
    flags = ["--model", args.model, "--allowed-media-path", IMAGES, "--max-queued-requests", str(max(256, args.requests))]
    with ServedJob(args.build, layout, flags, os.path.join(args.work, f"server-{run + 1}.log")) as job:
        start, client_cpu = time.perf_counter(), time.process_time()
        ttft, itl, tokens, errors = asyncio.run(drive(args, items, f"http://127.0.0.1:{job.port}"))
        wall, client_cpu = time.perf_counter() - start, time.process_time() - client_cpu
        server_cpu = coordinator_cpu_seconds(job.job.pid)
    return wall, client_cpu, server_cpu, tokens, ttft, itl, errors


async def drive(args, items, url):
    """Every request streamed, `args.concurrency` at a time (or arriving at `args.rate`): (TTFTs, inter-token
    latencies, output tokens, errors)."""
    ttft, itl, tokens, errors = [], [], [0], []

    async def one(client, i):
        body = {"model": "bench", "messages": items[i][0], "max_tokens": args.output_tokens, "temperature": 0,
                "stream": True, "stream_options": {"include_usage": True}, "ignore_eos": True}
        start = time.perf_counter()
        last, first = None, None
        async with client.stream("POST", url + "/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}: {(await response.aread())[:200]!r}")
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                now = time.perf_counter()
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    tokens[0] += chunk["usage"]["completion_tokens"]
                if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                    if first is None:
                        first = now - start
                    else:
                        itl.append(now - last)
                    last = now
        ttft.append(first if first is not None else time.perf_counter() - start)

    async def guarded(client, i):
        try:
            await one(client, i)
        except Exception as e:  # noqa: BLE001 - counted and printed
            errors.append(repr(e))

    limits = httpx.Limits(max_connections=max(args.concurrency, len(items)), max_keepalive_connections=None)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        if args.rate:
            rng, tasks = random.Random(1), []
            for i in range(len(items)):
                tasks.append(asyncio.create_task(guarded(client, i)))
                await asyncio.sleep(rng.expovariate(args.rate))
            await asyncio.gather(*tasks)
        else:
            queue = list(range(len(items)))

            async def worker():
                while queue:
                    await guarded(client, queue.pop(0))
            await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    return ttft, itl, tokens[0], errors


def coordinator_cpu_seconds(launcher_pid):
    """The coordinator's CPU time since it started (HTTP, preparation, detokenizing, the engine): utime and stime,
    fields 14 and 15 of stat(5)."""
    seconds = 0.0
    for pid in subprocess.run(["pgrep", "-P", str(launcher_pid), "-f", "ixc-coordinator"], capture_output=True,
                              text=True).stdout.split():
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        seconds += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return seconds


def offline(args, items):
    path = os.path.join(args.work, "requests.jsonl")
    with open(path, "w") as f:
        for _, line in items:
            f.write(json.dumps(line) + "\n")
    results = os.path.join(args.work, "results.jsonl")
    # At a concurrency of C the server runs at most C sequences at once: so does the offline engine here, or the
    # comparison would credit it with larger batches.
    limit = [] if args.rate else ["--max-num-seqs", str(args.concurrency)]
    run = subprocess.run([os.path.join(ROOT, "deploy", "launch.sh"), "--tp", str(args.tp), "--sp", str(args.sp),
                          "--vision", str(args.vision), "--build", args.build, "--", "--model", args.model,
                          "--requests", path, "--results", results, *limit], check=True, capture_output=True,
                         text=True)
    with open(results) as f:
        rows = [json.loads(line) for line in f]
    bad = [r for r in rows if "error" in r]
    if bad:
        sys.exit(f"offline errors: {bad[:2]}")
    # Every request arrives at once: the last one's end is the engine's makespan. The serving run prepares each
    # request (template, tokens, image decoding, HD transform) inside its measured time; the offline run does it
    # before the engine starts, and says how long it took: added, so both measure the same work.
    prepared = re.search(r"prepared \d+ requests in ([0-9.e+-]+) s", run.stdout + run.stderr)
    makespan = max(r["timings"]["e2e_s"] for r in rows)
    return makespan, float(prepared.group(1)) if prepared else 0.0, sum(len(r["ids"]) for r in rows)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", default=os.path.join(ROOT, "build", "cpu"))
    parser.add_argument("--model")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=float, default=0.0, help="requests per second (Poisson); 0: --concurrency")
    parser.add_argument("--output-tokens", type=int, default=32)
    parser.add_argument("--tp", type=int, default=2)
    parser.add_argument("--sp", type=int, default=1)
    parser.add_argument("--vision", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="served and offline runs, alternating; medians compared")
    args = parser.parse_args()
    args.build = os.path.abspath(args.build)
    args.work = tempfile.mkdtemp(prefix="ixc-serving-bench-")
    if not args.model:
        args.model = demo_model(os.path.join(args.build, "demo-model"))
    items = workload(args.requests, args.output_tokens)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mode = f"rate {args.rate}/s" if args.rate else f"concurrency {args.concurrency}"
    served, offline_rates = [], []
    for run in range(args.repeat):  # served and offline runs alternate, so that drifts of the machine hit both
        wall, client_cpu, server_cpu, tokens, ttft, itl, errors = serve(args, items, run)
        print(f"serving  T{args.tp}S{args.sp}V{args.vision}, {len(items)} requests (chat, image, 4K-character "
              f"document), {mode}, {args.output_tokens} output tokens each (run {run + 1} of {args.repeat})")
        print(f"  {len(items) / wall:7.2f} requests/s   {tokens / wall:8.1f} output tokens/s   ({wall:.2f} s, "
              f"{len(errors)} errors)")
        print(f"  CPU: this client {client_cpu:.1f} s ({client_cpu / wall:.2f} of {os.cpu_count()} cores), the "
              f"coordinator {server_cpu:.1f} s from its start")
        print(f"  TTFT  {percentiles(ttft)}")
        print(f"  ITL   {percentiles(itl)}")
        if errors:
            print("  errors:", errors[:3], "server log:", os.path.join(args.work, f"server-{run + 1}.log"))
        makespan, preparation, offline_tokens = offline(args, items)
        print(f"offline  the same {len(items)} requests at once through ixc-coordinator --requests"
              + ("" if args.rate else f" --max-num-seqs {args.concurrency}"))
        print(f"  {len(items) / (makespan + preparation):7.2f} requests/s   "
              f"{offline_tokens / (makespan + preparation):8.1f} output tokens/s   ({makespan:.2f} s in the engine "
              f"+ {preparation:.2f} s preparing)")
        served.append(tokens / wall)
        offline_rates.append(offline_tokens / (makespan + preparation))
    # Each served run against the offline run beside it: the machine's speed drifts over minutes, a pair's does not.
    costs = sorted(1 - served_rate / offline_rate for served_rate, offline_rate in zip(served, offline_rates))
    print(f"serving costs {costs[len(costs) // 2] * 100:.1f}% of the offline throughput (median of {args.repeat} "
          f"served-offline pairs: {', '.join(f'{cost * 100:.1f}%' for cost in costs)}; goal: under 5% at "
          "concurrency 32)")


if __name__ == "__main__":
    main()
