#!/usr/bin/env python3
"""Chunked prefill (docs/scheduling.md): 16 conversations decode while a 16K-token document arrives, through the
OpenAI API, streaming. It prints the decoders' inter-token latency, p50 and p99, without the document, with it
prefilled in chunks (--max-num-batched-tokens, the default), and with it prefilled whole (a budget the document fits
in); and the document's TTFT, chunked and whole. The goals (issue 23): the decoders' p99 with the document at most 2
times their p99 without it, and the document's TTFT at most 1.3 times its whole-prefill time.

    python3 bench/chunked_prefill_bench.py [--build build/cpu] [--tokens 16384] [--decoders 16] [--budget N]

The decoders' latencies count while the document is in the engine (from its request to its first token). The model
is the demo preset with max_position_embeddings 32768 (bench/bench_server.py says why); prefix caching is off,
so every run computes the same.
"""
import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time

import httpx

from bench_server import ROOT, ServedJob, demo_32k_model, document, unbound_env


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def run(args, budget, with_document):
    """The decoders' inter-token gaps (s) while the document is in the engine (or over as long, without it), and the
    document's TTFT (s)."""
    flags = ["--model", args.model, "--step-timeout-s", "3600", "--no-enable-prefix-caching"]
    if budget:
        flags += ["--max-num-batched-tokens", str(budget)]
    with ServedJob(args.build, ["--tp", "1", "--sp", "1", "--vision", "0"], flags,
                   os.path.join(args.work, f"server-{budget}.log"), unbound_env(1)) as job:
        return asyncio.run(drive(args, f"http://127.0.0.1:{job.port}", with_document))


async def drive(args, url, with_document):
    """The decoders and the document from one asyncio thread that reads the SSE lines itself (as the serving
    benchmark): on 2 cores a client that costs more takes its time from the server's steps."""
    stamps, stop = [], asyncio.Event()

    async def decoder(client, i):
        body = {"model": "bench", "max_tokens": 4000, "temperature": 0, "stream": True, "ignore_eos": True,
                "messages": [{"role": "user", "content": f"Tell me a long story about the harbour, number {i}."}]}
        while not stop.is_set():
            async with client.stream("POST", url + "/v1/chat/completions", json=body) as response:
                async for line in response.aiter_lines():
                    if stop.is_set():
                        break
                    if line.startswith("data: {"):
                        choices = json.loads(line[6:])["choices"]
                        if choices and choices[0]["delta"].get("content"):
                            stamps.append((i, time.perf_counter()))

    limits = httpx.Limits(max_connections=args.decoders + 1, max_keepalive_connections=None)
    async with httpx.AsyncClient(timeout=None, limits=limits) as client:
        tasks = [asyncio.create_task(decoder(client, i)) for i in range(args.decoders)]
        await asyncio.sleep(args.warmup)  # every decoder running
        start, ttft = time.perf_counter(), None
        if with_document:
            response = await client.post(url + "/v1/chat/completions", json={
                "model": "bench", "max_tokens": 1, "temperature": 0,
                "messages": [{"role": "user", "content": document(args.tokens)}]})
            response.raise_for_status()
            ttft = time.perf_counter() - start
        else:
            await asyncio.sleep(args.window)
        end = time.perf_counter()
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    gaps, last = [], {}  # the gaps that begin while the document is in the engine
    for i, stamp in stamps:
        if i in last and start <= last[i] <= end:
            gaps.append(stamp - last[i])
        last[i] = stamp
    return gaps, ttft


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", default=os.path.join(ROOT, "build", "cpu"))
    parser.add_argument("--model")
    parser.add_argument("--tokens", type=int, default=16384, help="the document's length")
    parser.add_argument("--decoders", type=int, default=16)
    parser.add_argument("--budget", type=int, default=0, help="--max-num-batched-tokens (0: the server's default)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds the decoders run before the document")
    parser.add_argument("--window", type=float, default=20.0, help="seconds measured without the document")
    args = parser.parse_args()
    args.build = os.path.abspath(args.build)
    args.work = tempfile.mkdtemp(prefix="ixc-chunked-bench-")
    args.model = args.model or demo_32k_model(args.build)
    alone, _ = run(args, args.budget, with_document=False)
    chunked, chunked_ttft = run(args, args.budget, with_document=True)
    whole, whole_ttft = run(args, 1 << 20, with_document=True)
    budget = args.budget or "the default"
    print(f"{args.decoders} decoders and a document of about {args.tokens} tokens, T1S1, demo model, CPU "
          f"({os.cpu_count()} cores); budget {budget}")
    print("                          ITL p50     ITL p99    gaps   document TTFT")
    for name, gaps, ttft in (("without the document", alone, None), ("document in chunks", chunked, chunked_ttft),
                             ("document whole", whole, whole_ttft)):
        print(f"  {name:22s} {percentile(gaps, 0.5) * 1000:8.1f} ms {percentile(gaps, 0.99) * 1000:8.1f} ms "
              f"{len(gaps):7d}   " + (f"{ttft:8.2f} s" if ttft else ""))
    print(f"goal: p99 with the document in chunks / without it = "
          f"{percentile(chunked, 0.99) / percentile(alone, 0.99):.2f} (at most 2); document TTFT chunked / whole = "
          f"{chunked_ttft / whole_ttft:.2f} (at most 1.3)")
    if alone:
        print(f"(mean ITL without the document {statistics.mean(alone) * 1000:.1f} ms)")


if __name__ == "__main__":
    main()
