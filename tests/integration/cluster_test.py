#!/usr/bin/env python3
"""The cluster under mpirun against the single-process ixc-generate.

Every layout (T x S LLM ranks, V vision ranks) runs the same requests (text, one image, three images, a video, a
sampled one) and must give the tokens ixc-generate gives, with prompt logits within 1e-4. Then: requests arriving
while others run on a KV cache small enough to force preemption (outputs unchanged); a long request (>= 16K
positions, with an image) under S = 4; image requests queued by a full image cache (outputs unchanged); a failing
rank, named by the coordinator, which exits non-zero; a layout that does not fit the job. The prefix cache: text,
image and video conversations of 2 to 4 turns give, in T1S1, T2S1, T1S2, T2S2 and T1S3, the tokens and logits (within
1e-5) they give without it, every later turn reusing its prefix; requests sharing a prefix race with the prefill that
fills it; a small pool evicts and preempts, outputs unchanged.

    python3 tests/integration/cluster_test.py BUILD_DIR [--only NAME]
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGES = os.path.join(ROOT, "tests", "data", "images")
VIDEOS = os.path.join(ROOT, "tests", "data", "videos")

REQUESTS = [
    dict(id="text", prompt="Describe the skyline of Dubai at night.", chat=True, use_meta=True, max_new_tokens=10),
    dict(id="one_image", prompt="What is in the picture?", chat=True, images=[os.path.join(IMAGES, "cars1.jpg")],
         max_new_tokens=8),
    dict(id="three_images", prompt="Image1 <ImageHere>; Image2 <ImageHere>; Image3 <ImageHere>; compare them.",
         chat=True, images=[os.path.join(IMAGES, f"cars{i}.jpg") for i in (1, 2, 3)], max_new_tokens=8),
    dict(id="video", prompt="Here are some frames of a video. Describe this video.", chat=True,
         video=os.path.join(VIDEOS, "landscape.mp4"), max_new_tokens=8),
    dict(id="sampled", prompt="Write a poem about cars.", chat=True, max_new_tokens=8, temperature=0.8, top_p=0.9,
         top_k=40, repetition_penalty=1.1, seed=5),
    dict(id="greedy_penalty", prompt="Repeat after me: cars cars cars", max_new_tokens=12, repetition_penalty=1.5),
    # Prompts too short for a block on every SP rank: whole on every rank (parallel::RingPrefill).
    dict(id="short", prompt="Hi", max_new_tokens=6),
    dict(id="one_token", prompt_ids=[1], max_new_tokens=6),
    # Beam search (model/beam_search.h): each beam a sequence of its own, forked from its parent's KV blocks.
    dict(id="beams_text", prompt="Describe the skyline of Dubai at night.", chat=True, max_new_tokens=9, num_beams=3,
         repetition_penalty=1.005, dump=False),
    dict(id="beams_image", prompt="What is in the picture?", chat=True, images=[os.path.join(IMAGES, "cars2.jpg")],
         max_new_tokens=7, num_beams=2, repetition_penalty=3.0, dump=False),
]

LAYOUTS = [(1, 1, 1), (2, 1, 1), (1, 2, 1), (1, 3, 1), (2, 2, 1), (4, 1, 1), (2, 1, 2), (1, 2, 3)]  # (T, S, V)


class Cluster:
    def __init__(self, build, work):
        self.build, self.work = build, work
        self.model = os.path.join(work, "model")
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_tiny_checkpoint.py"), "--preset", "tiny-kv4",
                        "--vocab", "92544", "--dtype", "bf16", "--tokenizer",
                        os.path.join(ROOT, "tests", "data", "tokenizer.model"), "--out", self.model],
                       check=True, stdout=subprocess.DEVNULL)
        self.env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
        self.long_model = None

    def with_long_context(self):
        """The same tiny model with max_position_embeddings 4096: its prompts rotate with RoPE's fixed base (under 64
        positions, dynamic NTK rotates a prompt by its length, and a prefix cached for one length serves no other)."""
        if self.long_model is None:
            self.long_model = os.path.join(self.work, "model-4096")
            subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_tiny_checkpoint.py"), "--preset",
                            "tiny-kv4", "--vocab", "92544", "--dtype", "bf16", "--max-position-embeddings", "4096",
                            "--tokenizer", os.path.join(ROOT, "tests", "data", "tokenizer.model"), "--out",
                            self.long_model], check=True, stdout=subprocess.DEVNULL)
        return self.long_model

    def reference(self, request, name, model=None):
        """ixc-generate on one process: (ids, logits)."""
        args = [os.path.join(self.build, "tools", "ixc-generate"), "--model", model or self.model, "--max-new-tokens",
                str(request["max_new_tokens"]), "--ignore-eos"]
        if "prompt_ids" in request:
            args += ["--prompt-ids", ",".join(map(str, request["prompt_ids"]))]
        else:
            args += ["--prompt", request["prompt"]]
        if request.get("chat"):
            args.append("--chat")
        if request.get("use_meta"):
            args.append("--use-meta")
        for image in request.get("images", []):
            args += ["--image", image]
        if "video" in request:
            args += ["--video", request["video"]]
        for key in ("temperature", "top_p", "top_k", "repetition_penalty", "seed", "num_beams"):
            if key in request:
                args += [f"--{key.replace('_', '-')}", str(request[key])]
        logits = os.path.join(self.work, f"{name}.reference.npy")
        if request.get("dump", True):
            args += ["--dump-logits", logits]
        out = subprocess.run(args, check=True, capture_output=True, text=True, env=self.env).stdout
        ids = [int(x) for x in out.split("generated ids: ")[1].split("\n")[0].split(",") if x]
        return ids, (np.load(logits) if request.get("dump", True) else None)

    def run(self, requests, tp, sp, vision, extra=(), expect_ok=True, timeout=600, launch_options=(), model=None):
        path = os.path.join(self.work, "requests.jsonl")
        with open(path, "w") as f:
            for r in requests:
                line = {k: v for k, v in r.items() if k != "dump"}
                line["ignore_eos"] = True
                if r.get("dump", True):
                    line["dump_logits"] = os.path.join(self.work, f"{r['id']}.cluster.npy")
                f.write(json.dumps(line) + "\n")
        results = os.path.join(self.work, "results.jsonl")
        if os.path.exists(results):
            os.remove(results)
        command = [os.path.join(ROOT, "deploy", "launch.sh"), "--tp", str(tp), "--sp", str(sp), "--vision",
                   str(vision), "--build", self.build, *launch_options, "--", "--model", model or self.model, "--requests",
                   path, "--results", results, "--step-timeout-s", "60", *extra]
        run = subprocess.run(command, capture_output=True, text=True, env=self.env, timeout=timeout)
        if expect_ok and run.returncode != 0:
            raise AssertionError(f"cluster T{tp}S{sp}V{vision} exited {run.returncode}:\n{run.stderr[-3000:]}")
        with open(results) as f:
            return run, {r["id"]: r for r in map(json.loads, f)}


def check_same(cluster, references, results, requests, label):
    for r in requests:
        got = results[r["id"]]
        assert "error" not in got, f"{label} {r['id']}: {got['error']}"
        ids, logits = references[r["id"]]
        assert got["ids"] == ids, f"{label} {r['id']}: cluster {got['ids']} != ixc-generate {ids}"
        if logits is not None:
            # The positions the prefill computed: after those the prefix cache held (checked where computed).
            ours = np.load(os.path.join(cluster.work, f"{r['id']}.cluster.npy"))
            logits = logits[got["cached_tokens"]:]
            error = float(np.abs(ours - logits).max())
            assert ours.shape == logits.shape and error <= 1e-4, f"{label} {r['id']}: logits differ by {error}"


def test_layouts(cluster):
    references = {r["id"]: cluster.reference(r, r["id"]) for r in REQUESTS}
    for tp, sp, vision in LAYOUTS:
        run, results = cluster.run(REQUESTS, tp, sp, vision)
        check_same(cluster, references, results, REQUESTS, f"T{tp}S{sp}V{vision}")
        # --kv-blocks 0 (the default): on the CPU each LLM rank holds one --max-context sequence, 98304 / 16 + 1
        # blocks, and says so when ready.
        assert "KV cache of 6145 blocks of 16 tokens per LLM rank" in run.stdout + run.stderr, run.stderr[-2000:]
        print(f"T{tp}S{sp}V{vision}: {len(REQUESTS)} requests equal ixc-generate")
    # The same job as one program on every rank (launch.sh --one-program: no MPMD line).
    run, results = cluster.run(REQUESTS, 2, 1, 1, launch_options=["--one-program"])
    assert "one_program.sh" in run.stdout, run.stdout[-2000:]
    check_same(cluster, references, results, REQUESTS, "T2S1V1, one program")
    print(f"T2S1V1 as one program: {len(REQUESTS)} requests equal ixc-generate")


def test_preemption_and_arrivals(cluster):
    prompt = "Tell me everything about the three cars in the pictures and their engines, " * 3
    requests = [dict(id=f"r{i}", prompt=prompt + f"number {i}.", chat=True, max_new_tokens=24,
                     arrive_after_ms=5 * i, dump=False) for i in range(5)]
    requests.append(dict(id="short", prompt="Hi", max_new_tokens=30, arrive_after_ms=12, dump=False))
    requests.append(dict(id="long", prompt="A long story about the desert city. " * 18, max_new_tokens=6,
                         arrive_after_ms=8, dump=False))
    references = {r["id"]: cluster.reference(r, r["id"]) for r in requests}
    # 24 blocks of 4 tokens per SP rank: three short prompts fit, their decodes do not, so the latest admitted is
    # preempted; the long prompt (about 160 positions, 20 blocks per rank) waits for room and runs between them.
    # Without the prefix cache, whose shared blocks would leave room enough (test_prefix_cache_races_and_evictions
    # preempts with it).
    run, results = cluster.run(requests, 1, 2, 1, extra=["--kv-block-size", "4", "--kv-blocks", "24",
                                                        "--enable-prefix-caching=false"])
    check_same(cluster, references, results, requests, "preemption")
    assert "KV cache of 24 blocks of 4 tokens per LLM rank" in run.stdout + run.stderr, run.stderr[-2000:]
    preempted = sum(r["preemptions"] for r in results.values())
    assert preempted > 0, "the small KV cache should have forced a preemption"
    print(f"mixed arrivals on a small KV cache: {preempted} preemptions, outputs unchanged")
    # Two beam searches of 3 beams arriving together on the same cache: one fits it (its prompt, about 8 blocks per
    # SP rank, and 3 beams growing 3 blocks each), both do not, so a decode or a fork that finds no block preempts a
    # search, which starts again from its prompt; the outputs are unchanged.
    searches = [dict(id=f"b{i}", prompt=prompt + f"number {i}.", chat=True, max_new_tokens=24, num_beams=3,
                     repetition_penalty=1.005, dump=False) for i in range(2)]
    references.update({r["id"]: cluster.reference(r, r["id"]) for r in searches})
    _, results = cluster.run(searches, 1, 2, 1, extra=["--kv-block-size", "4", "--kv-blocks", "24",
                                                      "--enable-prefix-caching=false"])
    check_same(cluster, references, results, searches, "beam searches preempted")
    preempted = sum(r["preemptions"] for r in results.values())
    assert preempted > 0, "two beam searches on the small KV cache should have forced a preemption"
    print(f"two beam searches on a small KV cache: {preempted} preemptions, outputs unchanged")
    # --max-num-seqs 1, every request arriving at once: one sequence at a time, in input order (each one's first
    # token after the one before has ended), with the same outputs.
    at_once = [{k: v for k, v in r.items() if k != "arrive_after_ms"} for r in requests]
    _, results = cluster.run(at_once, 2, 1, 1, extra=["--max-num-seqs", "1"])
    check_same(cluster, references, results, at_once, "max-num-seqs 1")
    timings = [results[r["id"]]["timings"] for r in at_once]
    assert all(t["ttft_s"] > before["e2e_s"] for before, t in zip(timings, timings[1:])), timings
    print("--max-num-seqs 1: one sequence at a time, outputs unchanged")
    # A prompt the whole cache cannot hold fails alone, saying how large the cache is; the others go on.
    short = next(r for r in requests if r["id"] == "short")
    too_long = dict(id="too_long", prompt="A long story about the desert city. " * 60, max_new_tokens=2, dump=False)
    # So does a malformed request (a flag that is not a boolean once threw past the coordinator and ended the job).
    malformed = dict(id="malformed", prompt="Hi", chat="yes", dump=False)
    _, results = cluster.run([too_long, malformed, short], 1, 2, 1,
                             extra=["--kv-block-size", "4", "--kv-blocks", "24"])
    check_same(cluster, references, results, [short], "beside a prompt too long for the cache and a malformed one")
    assert "each SP rank holds 24 blocks of 4 tokens: raise --kv-blocks" in results["too_long"]["error"], results
    assert results["malformed"]["error"] == "field 'chat': must be true or false", results["malformed"]


def test_long_request(cluster):
    request = dict(id="long", prompt="The city at night. " * 3300 + "What does <ImageHere> show?",
                   images=[os.path.join(IMAGES, "cars1.jpg")], max_new_tokens=4, dump=False)
    references = {"long": cluster.reference(request, "long")}
    # A step of this prompt can take minutes under the sanitizers (the asan preset): a longer step timeout.
    # Budgets in positions (--prefill-keys-per-token 0): in one step, then in chunks of 4096.
    positions = ["--kv-block-size", "64", "--step-timeout-s", "600", "--prefill-keys-per-token", "0"]
    _, results = cluster.run([request], 1, 4, 1, extra=positions + ["--max-num-batched-tokens", "100000"])
    assert results["long"]["prompt_tokens"] >= 16384, results["long"]["prompt_tokens"]
    check_same(cluster, references, results, [request], "long S4")
    # In chunks of 4096 positions (5 of them, the image in the last): the same tokens (its logits are 6 GB).
    _, results = cluster.run([request], 1, 4, 1, extra=positions + ["--max-num-batched-tokens", "4096"])
    check_same(cluster, references, results, [request], "long S4 in chunks")
    print(f"long request of {results['long']['prompt_tokens']} positions under S=4 equals ixc-generate, whole and in "
          f"chunks of 4096")


def test_image_cache(cluster):
    requests = [dict(id=f"car{i}", prompt="What is in the picture?", chat=True,
                     images=[os.path.join(IMAGES, f"cars{i}.jpg")], max_new_tokens=4, dump=False) for i in (1, 2, 3)]
    references = {r["id"]: cluster.reference(r, r["id"]) for r in requests}
    # No room for a second request's images: each waits, in arrival order, until the one before it has finished.
    _, results = cluster.run(requests, 1, 1, 1, extra=["--image-cache-mib", "0"])
    check_same(cluster, references, results, requests, "image cache 0")
    # All arrive at once, so each one's wait and the others' time to finish count from the same moment.
    waits = [results[r["id"]]["timings"]["image_queue_s"] for r in requests]
    done = [results[r["id"]]["timings"]["e2e_s"] for r in requests]
    assert waits[0] < done[0] <= waits[1] < done[1] <= waits[2], (waits, done)
    # The default cache holds all three: all are dispatched before the first finishes.
    _, results = cluster.run(requests, 1, 1, 1)
    check_same(cluster, references, results, requests, "default image cache")
    default_waits = [results[r["id"]]["timings"]["image_queue_s"] for r in requests]
    assert max(default_waits) < min(results[r["id"]]["timings"]["e2e_s"] for r in requests), default_waits
    print(f"image cache of one request: images dispatched after {', '.join(f'{w:.2f}' for w in waits)} s, outputs "
          f"unchanged; the default cache: no wait")


def test_failures(cluster):
    path = os.path.join(cluster.work, "requests.jsonl")
    with open(path, "w") as f:
        f.write(json.dumps(dict(id="x", prompt="Hi", max_new_tokens=3, dump_logits="/nonexistent/dir/x.npy")) + "\n")
        f.write(json.dumps(dict(id="y", prompt="Hello there", max_new_tokens=3)) + "\n")
    results_path = os.path.join(cluster.work, "results.jsonl")
    run = subprocess.run([os.path.join(ROOT, "deploy", "launch.sh"), "--tp", "2", "--sp", "1", "--vision", "0",
                          "--build", cluster.build, "--", "--model", cluster.model, "--requests", path, "--results",
                          results_path, "--step-timeout-s", "30"], capture_output=True, text=True, env=cluster.env)
    # The leader (rank 1: tp 0, sp 0) cannot write x's logits: x fails alone (it once failed the rank and the job),
    # y goes on.
    assert run.returncode == 0, run.stderr[-2000:]
    with open(results_path) as f:
        results = {r["id"]: r for r in map(json.loads, f)}
    assert results["x"]["error"] == "rank 1: dump_logits: /nonexistent/dir/x.npy: cannot open for writing", results
    assert results["x"]["finish_reason"] == "error" and "error" not in results["y"], results
    assert len(results["y"]["ids"]) == 3, results
    # A rank that does not answer in time (here: a step slower than the timeout) is named.
    with open(path, "w") as f:
        f.write(json.dumps(dict(id="slow", prompt="The city at night. " * 3000, max_new_tokens=2)) + "\n")
    run = subprocess.run([os.path.join(ROOT, "deploy", "launch.sh"), "--tp", "2", "--sp", "1", "--vision", "0",
                          "--build", cluster.build, "--", "--model", cluster.model, "--requests", path, "--results",
                          results_path, "--step-timeout-s", "1", "--max-num-batched-tokens", "100000",
                          "--prefill-keys-per-token", "0"],  # one step
                         capture_output=True, text=True, env=cluster.env)
    assert run.returncode != 0 and "step 1: ranks 1, 2 did not answer within 1 s" in run.stderr, run.stderr[-2000:]
    # A rank that dies mid-request (killed) stops its heartbeats: the coordinator names it.
    with open(path, "w") as f:
        f.write(json.dumps(dict(id="victim", prompt_ids=[1] + [5] * 16000, max_new_tokens=400, ignore_eos=True)) + "\n")
    job = subprocess.Popen([os.path.join(ROOT, "deploy", "launch.sh"), "--tp", "2", "--sp", "1", "--vision", "0",
                            "--build", cluster.build, "--", "--model", cluster.model, "--requests", path, "--results",
                            results_path, "--step-timeout-s", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, env=cluster.env)
    # Kill a worker as soon as the coordinator has them all: the 16K-position prefill of step 1 is then under way.
    seen = []
    for line in job.stderr:
        seen.append(line)
        if "workers ready" in line:
            break
    # launch.sh execs mpirun, whose children are the ranks: only this job's workers are candidates.
    workers = subprocess.run(["pgrep", "-P", str(job.pid), "-f", "ixc-worker"], capture_output=True,
                             text=True).stdout.split()
    assert workers, "no worker to stop:\n" + "".join(seen)
    os.kill(int(workers[-1]), signal.SIGKILL)
    _, rest = job.communicate(timeout=120)
    stderr = "".join(seen) + rest
    assert job.returncode != 0 and ("sent no heartbeat" in stderr or "no heartbeat for" in stderr), stderr[-2000:]
    with open(results_path) as f:
        assert "heartbeat" in json.loads(f.readline())["error"]
    # A layout that does not fit the job, or the model.
    run = subprocess.run([os.path.join(ROOT, "deploy", "launch.sh"), "--tp", "3", "--sp", "1", "--vision", "0",
                          "--build", cluster.build, "--", "--model", cluster.model, "--requests", path, "--results",
                          results_path], capture_output=True, text=True, env=cluster.env)
    assert run.returncode != 0 and "tp 3 does not divide the model's 4 KV heads" in run.stderr, run.stderr[-2000:]
    # --device: a bad value is refused at start; cuda on a build without the backend (or a machine without a GPU)
    # stops every worker with the reason, which the coordinator reports with the rank.
    def launch(*device_flags):
        return subprocess.run([os.path.join(ROOT, "deploy", "launch.sh"), "--tp", "1", "--sp", "1", "--vision", "1",
                               "--build", cluster.build, "--", "--model", cluster.model, "--requests", path,
                               "--results", results_path, *device_flags], capture_output=True, text=True,
                              env=cluster.env)
    run = launch("--device", "tpu")
    assert run.returncode != 0 and "--device must be cpu or cuda, not 'tpu'" in run.stderr, run.stderr[-2000:]
    run = launch("--device", "cuda")
    assert run.returncode != 0 and re.search(r"rank \d", run.stderr) and (
        "this build has no CUDA backend" in run.stderr or "no CUDA device is usable" in run.stderr), run.stderr[-2000:]
    # --vision-handoff: nccl moves image rows between GPUs, so it needs --device cuda.
    run = launch("--vision-handoff", "nvlink")
    assert run.returncode != 0 and "--vision-handoff must be auto, nccl or mpi, not 'nvlink'" in run.stderr, \
        run.stderr[-2000:]
    run = launch("--vision-handoff", "nccl")
    assert run.returncode != 0 and "it needs --device cuda" in run.stderr, run.stderr[-2000:]
    run = launch("--image-cache-mib", "-1")
    assert run.returncode != 0 and "--image-cache-mib -1 is negative" in run.stderr, run.stderr[-2000:]
    run = launch("--kv-blocks", "-1")
    assert run.returncode != 0 and "--kv-blocks -1 is negative" in run.stderr, run.stderr[-2000:]
    run = launch("--max-context", "1")
    assert run.returncode != 0 and "--max-context 1 leaves no room" in run.stderr, run.stderr[-2000:]
    print("a failing rank is named, its requests fail, the job exits non-zero; bad layouts, devices and handoffs "
          "are refused")



# Multi-turn conversations for the prefix cache: each turn's prompt is the conversation so far in the chat template
# (raw text, chat false), so a turn shares the earlier turn's prompt as its prefix; media stay in the first turn.
# The "ids" conversation feeds back exactly the tokens the model generated (from ixc-generate), so its second turn
# reuses the K/V its first turn's decode steps wrote.
def turn_text(history, query, media=""):
    text = "".join(f"[UNUSED_TOKEN_146]user\n{q}[UNUSED_TOKEN_145]\n[UNUSED_TOKEN_146]assistant\n{a}"
                   "[UNUSED_TOKEN_145]\n" for q, a in history)
    return text + f"[UNUSED_TOKEN_146]user\n{media}{query}[UNUSED_TOKEN_145]\n[UNUSED_TOKEN_146]assistant\n"


def conversations(cluster):
    questions = ["Describe the skyline of Dubai at night in detail.", "Which building is the tallest one there?",
                 "How tall is it, and when was it built?", "Summarize everything in one sentence."]
    answers = ["It glitters with towers and lights along the creek.", "The Burj Khalifa, by far.",
               "About 828 metres; it opened in 2010."]
    media = {"text": ("", {}, 4), "image": ("<ImageHere>", dict(images=[os.path.join(IMAGES, "cars1.jpg")]), 3),
             "video": ("<ImageHere>", dict(video=os.path.join(VIDEOS, "landscape.mp4")), 2)}
    turns = []  # by turn, the requests of every conversation
    for name, (placeholder, medium, count) in media.items():
        for t in range(count):
            history = list(zip(questions[:t], answers[:t]))
            history = [((placeholder if i == 0 else "") + q, a) for i, (q, a) in enumerate(history)]
            text = turn_text(history, questions[t], placeholder if t == 0 else "")
            request = dict(id=f"{name}{t}", prompt=text, max_new_tokens=6, **medium)
            while len(turns) <= t:
                turns.append([])
            turns[t].append(request)
    # Text whose second turn holds the first turn's generated tokens: ids of the template's text, from the tokenizer
    # that ixc-generate uses (its --dump-prompt-ids would do; here the first turn's ids come from a run).
    first = dict(id="ids0", prompt_ids=list(range(1000, 1000 + 45)), max_new_tokens=9)
    generated, _ = cluster.reference(dict(first, dump=False), "ids0", model=cluster.with_long_context())
    second = dict(id="ids1", prompt_ids=first["prompt_ids"] + generated + list(range(2000, 2030)), max_new_tokens=6)
    turns[0].append(first)
    turns[1].append(second)
    return [r for turn in turns for r in turn]


def run_saving_logits(cluster, requests, tp, sp, extra, label, model=None):
    """The job's results, and each request's dumped logits (the next run writes over the files)."""
    run, results = cluster.run(requests, tp, sp, 1, extra=extra, model=model or cluster.with_long_context())
    for r in requests:
        got = results[r["id"]]
        assert "error" not in got, f"{label} {r['id']}: {got['error']}"
        got["logits"] = np.load(os.path.join(cluster.work, f"{r['id']}.cluster.npy"))
    return run, results


def check_cached_equals_uncached(uncached, cached, requests, label):
    """The same tokens, and the logits of the positions computed with the cache within 1e-5 of the same positions'
    without it."""
    for r in requests:
        off, on = uncached[r["id"]], cached[r["id"]]
        assert on["ids"] == off["ids"], f"{label} {r['id']}: cached {on['ids']} != uncached {off['ids']}"
        assert off["cached_tokens"] == 0, off
        expected = off["logits"][on["cached_tokens"]:]
        assert on["logits"].shape == expected.shape, (label, r["id"], on["logits"].shape, expected.shape)
        error = float(np.abs(on["logits"] - expected).max())
        assert error <= 1e-5, f"{label} {r['id']}: logits differ by {error} with {on['cached_tokens']} cached"


def test_prefix_caching(cluster):
    requests = conversations(cluster)
    later = [r["id"] for r in requests if not r["id"].endswith("0")]
    for tp, sp in [(1, 1), (2, 1), (1, 2), (2, 2), (1, 3)]:
        label = f"T{tp}S{sp}"
        # One request at a time, in input order (each turn after the one before it has ended).
        _, uncached = run_saving_logits(cluster, requests, tp, sp,
                                        ["--enable-prefix-caching=false", "--max-num-seqs", "1"], label)
        run, cached = run_saving_logits(cluster, requests, tp, sp, ["--max-num-seqs", "1"], label)
        check_cached_equals_uncached(uncached, cached, requests, label)
        hits = {i: cached[i]["cached_tokens"] for i in later}
        assert all(hits.values()), f"{label}: every later turn should reuse its conversation's prefix: {hits}"
        assert cached["ids1"]["cached_tokens"] >= 48, cached["ids1"]  # into the first turn's generated tokens
        log = run.stdout + run.stderr
        images = re.search(r"image cache: (\d+) of (\d+) images hit", log)
        assert images and images.groups() == ("3", "5"), log[-2000:]  # turns 2 and 3 of the image, 2 of the video
        print(f"{label}: {len(requests)} conversation turns equal with and without the prefix cache; cached "
              f"positions per later turn {hits}; {images.group(0)}")
    # Past max_position_embeddings (64 here) dynamic NTK rotates a prompt by its length: nothing of a longer prompt
    # may be reused, and nothing is; images still are.
    _, uncached = run_saving_logits(cluster, requests, 1, 2, ["--enable-prefix-caching=false", "--max-num-seqs", "1"],
                                    "NTK", model=cluster.model)
    run, cached = run_saving_logits(cluster, requests, 1, 2, ["--max-num-seqs", "1"], "NTK", model=cluster.model)
    check_cached_equals_uncached(uncached, cached, requests, "NTK")
    long_turns = [i for i in later if cached[i]["prompt_tokens"] > 64]
    assert len(long_turns) >= 5 and all(cached[i]["cached_tokens"] == 0 for i in long_turns), \
        {i: (cached[i]["prompt_tokens"], cached[i]["cached_tokens"]) for i in later}
    assert "image cache: 3 of 5 images hit" in run.stdout + run.stderr
    print("past max_position_embeddings under dynamic NTK: no prefix reused, outputs unchanged")


def test_prefix_cache_races_and_evictions(cluster):
    shared = "The report on the desert city, its towers, its harbour and its history. " * 8
    requests = [dict(id=f"q{i}", prompt=shared + f"Question {i}: what about part {i}?", max_new_tokens=12)
                for i in range(6)]
    # Requests that share a long prefix arrive together: the four the batch takes compute it side by side in one step
    # (one registers it, the others' blocks stay private); the last two, admitted when those end, hit it. A budget in
    # positions that holds the four.
    race = ["--max-num-seqs", "4", "--max-num-batched-tokens", "100000", "--prefill-keys-per-token", "0"]
    _, uncached = run_saving_logits(cluster, requests, 1, 2, race + ["--enable-prefix-caching=false"], "race")
    _, cached = run_saving_logits(cluster, requests, 1, 2, race, "race")
    check_cached_equals_uncached(uncached, cached, requests, "race")
    hits = {r: cached[r]["cached_tokens"] for r in cached}
    assert all(hits[f"q{i}"] == 0 for i in range(4)) and hits["q4"] > 0 and hits["q5"] > 0, hits
    # A pool of 40 blocks of 4 tokens: the conversations and the shared prefix evict each other's cached blocks and
    # preempt running ones; the outputs stay those without a cache.
    requests += [dict(r, arrive_after_ms=100 + 10 * i) for i, r in enumerate(conversations(cluster))]
    small = ["--kv-block-size", "4", "--kv-blocks", "40"]
    _, uncached = run_saving_logits(cluster, requests, 1, 2, small + ["--enable-prefix-caching=false"], "small pool")
    run, cached = run_saving_logits(cluster, requests, 1, 2, small, "small pool")
    check_cached_equals_uncached(uncached, cached, requests, "small pool")
    preempted = sum(r["preemptions"] for r in cached.values())
    hit = sum(r["cached_tokens"] for r in cached.values())
    evicted = int(re.search(r"(\d+) blocks evicted", run.stdout + run.stderr).group(1))
    assert preempted > 0 and hit > 0 and evicted > 0, (preempted, hit, evicted)
    print(f"a shared prefix raced and evicted on a pool of 40 blocks: {hit} cached positions, {evicted} blocks "
          f"evicted, {preempted} preemptions, outputs unchanged")


def test_chunked_prefill(cluster):
    """Prompts prefilled in chunks under --max-num-batched-tokens (cut into 2, 3 and 7 chunks, and inside image rows)
    give the tokens and the logits (within 1e-5) of the whole prefill, in T1S1, T2S1, T1S2 and T2S2; chunks after a
    prefix the cache holds too. One request at a time (--max-num-seqs 1), so each prompt has the budget alone, counted
    in positions (--prefill-keys-per-token 0); then all together with the budget's default cost of attention, so
    chunks run in one forward pass beside other requests' decodes and are cut where the keys they read say."""
    requests = [r for r in REQUESTS if r["id"] in ("text", "one_image", "three_images", "video")]
    requests += [dict(r, id=r["id"] + "_again") for r in requests]  # after the first's prefix, from the cache
    model = cluster.with_long_context()
    for tp, sp in [(1, 1), (2, 1), (1, 2), (2, 2)]:
        label = f"T{tp}S{sp}"
        _, whole = run_saving_logits(cluster, requests, tp, sp, ["--max-num-seqs", "1", "--max-num-batched-tokens",
                                                                 "100000", "--prefill-keys-per-token", "0"],
                                     label, model=model)
        longest = max(whole[r["id"]]["prompt_tokens"] - whole[r["id"]]["cached_tokens"] for r in requests)
        chunked_counts = set()
        for chunks in (2, 3, 7):
            budget = -(-longest // chunks)
            _, chunked = run_saving_logits(cluster, requests, tp, sp,
                                           ["--max-num-seqs", "1", "--max-num-batched-tokens", str(budget),
                                            "--prefill-keys-per-token", "0"], f"{label} budget {budget}", model=model)
            for r in requests:
                one, other = whole[r["id"]], chunked[r["id"]]
                assert other["ids"] == one["ids"], f"{label} {r['id']}: chunked {other['ids']} != whole {one['ids']}"
                assert other["cached_tokens"] == one["cached_tokens"], (r["id"], other, one)
                error = float(np.abs(other["logits"] - one["logits"]).max())
                assert other["logits"].shape == one["logits"].shape and error <= 1e-5, \
                    f"{label} {r['id']}: chunked logits differ by {error} (budget {budget})"
                chunked_counts.add(-(-(one["prompt_tokens"] - one["cached_tokens"]) // budget))
        assert {2, 3, 7} <= chunked_counts, chunked_counts
        budget = -(-longest // 7)
        _, together = run_saving_logits(cluster, requests, tp, sp, ["--max-num-batched-tokens", str(budget)],
                                        f"{label} together, budget {budget}", model=model)
        for r in requests:
            one, other = whole[r["id"]], together[r["id"]]
            assert other["ids"] == one["ids"], f"{label} {r['id']} together: {other['ids']} != whole {one['ids']}"
            error = float(np.abs(other["logits"] - one["logits"]).max()) if other["logits"].shape == \
                one["logits"].shape else float("inf")
            # A prompt behind a cached prefix may find a shorter one here (its twin still running): compare its last.
            if other["cached_tokens"] != one["cached_tokens"]:
                error = float(np.abs(other["logits"][-1] - one["logits"][-1]).max())
            assert error <= 1e-5, f"{label} {r['id']} together: logits differ by {error}"
        print(f"{label}: {len(requests)} prompts in 1 to {max(chunked_counts)} chunks, and all together in chunks "
              f"beside decodes, equal the whole prefill")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("build")
    parser.add_argument("--only")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="ixc_cluster_")
    try:
        cluster = Cluster(os.path.abspath(args.build), work)
        tests = [test_layouts, test_preemption_and_arrivals, test_long_request, test_image_cache, test_failures,
                 test_prefix_caching, test_prefix_cache_races_and_evictions, test_chunked_prefill]
        for test in tests:
            if args.only and args.only != test.__name__:
                continue
            test(cluster)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
