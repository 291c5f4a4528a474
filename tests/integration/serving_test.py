#!/usr/bin/env python3
"""The cluster as an OpenAI server under mpirun, driven by the official `openai` client and raw HTTP.

Against a T2S1V1 job on a tiny checkpoint with the real tokenizer:
  api          chat (plain and streamed, equal text), images as data URLs and allowed paths, a video, a two-turn
               dialogue with an image in the first turn, /v1/completions (text and ids), /v1/models, n > 1, stop
               strings, /tokenize; greedy text equals ixc-generate's for the same conversation
  concurrency  64 streaming clients at once (text, images, video): each completes exactly once, as when alone
  cancel       clients that drop mid-stream: KV blocks and image cache back to idle, new requests served
  bad_input    over 50 malformed requests: each a 4xx in OpenAI's shape, and a good request after each
  drain        SIGTERM with streams in flight: they finish, new requests get 503, the job exits 0; a drain that
               runs out of time ends the rest with finish_reason 'abort'
  failure      a worker that goes silent (SIGSTOP) or dies (SIGKILL): the stream's error names the rank, /health
               turns 503, the job exits non-zero within a bound
  launch       a bad flag ends the whole job with its message instead of hanging

    python3 tests/integration/serving_test.py BUILD_DIR [--only NAME]
"""
import argparse
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import httpx
import numpy
import openai

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "tests", "data")
IMAGES = os.path.join(DATA, "images")
VIDEOS = os.path.join(DATA, "videos")
END_OF_TURN = "[UNUSED_TOKEN_145]"
START_OF_TURN = "[UNUSED_TOKEN_146]"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url, seconds, alive, describe):
    """Until `url` answers 200; fails with describe() when alive() turns false or `seconds` pass."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        assert alive(), f"it stopped before {url} answered: {describe()}"
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {seconds} s: {describe()}")


def data_url(path, mime):
    with open(path, "rb") as f:
        return f"data:{mime};base64," + base64.b64encode(f.read()).decode()


class Server:
    """One cluster job serving the API; `stop()` sends SIGTERM to the coordinator and returns the job's exit code."""

    def __init__(self, build, model, work, extra=(), tp=2, sp=1, vision=1):
        env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
        # A free port may be taken before the server binds it (tests run side by side, Open MPI's TCP transport takes
        # ephemeral ports): the server then says so and exits, and another port is tried.
        for attempt in range(3):
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            self.log_path = os.path.join(work, f"server-{self.port}.log")
            self.log = open(self.log_path, "w")
            command = [os.path.join(ROOT, "deploy", "launch.sh"), "--tp", str(tp), "--sp", str(sp), "--vision",
                       str(vision), "--build", build, "--", "--model", model, "--serve", "--port", str(self.port),
                       "--allowed-media-path", f"{DATA},{work}", "--step-timeout-s", "60", *extra]
            self.job = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env=env)
            try:
                wait_ready(self.url + "/health", 120, lambda: self.job.poll() is None,
                           lambda: f"the server (exit {self.job.poll()}):\n{self.output()}")
                break
            except AssertionError:
                if attempt == 2 or f"cannot listen on 127.0.0.1:{self.port}" not in self.output():
                    raise
                self.wait(60)
        self.client = openai.OpenAI(base_url=self.url + "/v1", api_key="unused", max_retries=0, timeout=300)

    def output(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path) as f:
            return f.read()[-4000:]

    def pids(self, name):
        return [int(p) for p in subprocess.run(["pgrep", "-P", str(self.job.pid), "-f", name], capture_output=True,
                                               text=True).stdout.split()]

    def signal_coordinator(self, signum):
        for pid in self.pids("ixc-coordinator"):
            os.kill(pid, signum)

    def wait(self, timeout):
        try:
            return self.job.wait(timeout=timeout)
        finally:
            if self.job.poll() is None:
                self.job.kill()
                self.job.wait()
            self.log.close()

    def stop(self, timeout=60):
        self.signal_coordinator(signal.SIGTERM)
        return self.wait(timeout)

    def metrics(self):
        """Each series' value, by name; the values of a name with several series (ranks, reasons) summed."""
        values = {}
        for line in httpx.get(self.url + "/metrics", timeout=10).text.splitlines():
            if line and not line.startswith("#"):
                series, value = line.rsplit(" ", 1)
                name = series.split("{")[0]
                values[name] = values.get(name, 0.0) + float(value)
        return values


class Context:
    def __init__(self, build):
        self.build = build
        self.work = tempfile.mkdtemp(prefix="ixc-serving-")
        self.model = os.path.join(self.work, "model")
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_tiny_checkpoint.py"), "--preset", "tiny-kv4",
                        "--vocab", "92544", "--dtype", "bf16", "--tokenizer", os.path.join(DATA, "tokenizer.model"),
                        "--out", self.model], check=True, stdout=subprocess.DEVNULL)
        self.env = dict(os.environ, OMP_NUM_THREADS="1")

    def generate(self, prompt, tokens, chat=True, images=(), video=None, model=None):
        """ixc-generate's greedy ids (the tests compare texts through the server's /detokenize)."""
        args = [os.path.join(self.build, "tools", "ixc-generate"), "--model", model or self.model, "--prompt", prompt,
                "--max-new-tokens", str(tokens), "--ignore-eos"]
        if chat:
            args.append("--chat")
        for image in images:
            args += ["--image", image]
        if video:
            args += ["--video", video]
        out = subprocess.run(args, check=True, capture_output=True, text=True, env=self.env).stdout
        return [int(x) for x in out.split("generated ids: ")[1].split("\n")[0].split(",") if x]


    def log_softmax(self, ids):
        """The log-softmax of ixc-generate's logits at every position of the prompt `ids` (one process, T1S1)."""
        path = os.path.join(self.work, "logits.npy")
        subprocess.run([os.path.join(self.build, "tools", "ixc-generate"), "--model", self.model, "--prompt-ids",
                        ",".join(map(str, ids)), "--max-new-tokens", "1", "--dump-logits", path], check=True,
                       capture_output=True, env=self.env)
        logits = numpy.load(path).astype(numpy.float64)
        peak = logits.max(axis=1, keepdims=True)
        return logits - peak - numpy.log(numpy.exp(logits - peak).sum(axis=1, keepdims=True))


def chat(server, messages, **kwargs):
    kwargs.setdefault("temperature", 0)
    kwargs.setdefault("max_tokens", 8)
    return server.client.chat.completions.create(model="model", messages=messages, **kwargs)


def streamed(server, messages, **kwargs):
    kwargs.setdefault("temperature", 0)
    kwargs.setdefault("max_tokens", 8)
    text, finish, usage, chunks = "", None, None, 0
    for chunk in server.client.chat.completions.create(model="model", messages=messages, stream=True,
                                                       stream_options={"include_usage": True}, **kwargs):
        chunks += 1
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    return text, finish, usage, chunks


def detokenize(server, ids):
    return httpx.post(server.url + "/detokenize", json={"tokens": ids}, timeout=10).json()["prompt"]


def test_api(ctx):
    server = Server(ctx.build, ctx.model, ctx.work)
    try:
        models = server.client.models.list().data
        assert [m.id for m in models] == ["model"] and models[0].max_model_len == 98304, models
        hello = [{"role": "user", "content": "Describe the skyline of Dubai at night."}]
        # Greedy, the end of turn ignored so every token counts: the text of ixc-generate's ids.
        reference = ctx.generate("Describe the skyline of Dubai at night.", 12)
        answer = chat(server, hello, max_tokens=12, extra_body={"ignore_eos": True})
        assert answer.choices[0].message.content == detokenize(server, reference), (answer, reference)
        assert answer.usage.completion_tokens == 12 and answer.choices[0].finish_reason == "length", answer
        text, finish, usage, chunks = streamed(server, hello, max_tokens=12, extra_body={"ignore_eos": True})
        assert text == answer.choices[0].message.content and finish == "length", (text, answer)
        assert usage.prompt_tokens == answer.usage.prompt_tokens and usage.completion_tokens == 12, usage
        assert chunks >= 12, chunks
        # The meta instruction from a system message.
        system = [{"role": "system", "content": "You are a car expert."}, *hello]
        reference = ctx.generate(f"{START_OF_TURN}system\nYou are a car expert.{END_OF_TURN}\n{START_OF_TURN}user\n"
                                 f"Describe the skyline of Dubai at night.{END_OF_TURN}\n{START_OF_TURN}assistant\n",
                                 6, chat=False)
        answer = chat(server, system, max_tokens=6, extra_body={"ignore_eos": True})
        assert answer.choices[0].message.content == detokenize(server, reference), answer

        # An image as a data URL and as an allowed path: both equal ixc-generate's chat(query, [image]).
        cars = os.path.join(IMAGES, "cars1.jpg")
        reference = detokenize(server, ctx.generate("What is in the picture?", 8, images=[cars]))
        for url in (data_url(cars, "image/jpeg"), cars, "file://" + cars):
            message = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                                    {"type": "text", "text": "What is in the picture?"}]}]
            answer = chat(server, message, extra_body={"ignore_eos": True})
            assert answer.choices[0].message.content == reference, (url[:40], answer, reference)
        text, _, _, _ = streamed(server, message, extra_body={"ignore_eos": True})
        assert text == reference, (text, reference)
        # Two images: "Image1 <ImageHere>; Image2 <ImageHere>; " where they stand, as the reference's README.
        two = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": cars}},
                                            {"type": "image_url", "image_url": {"url": os.path.join(IMAGES, "cars2.jpg")}},
                                            {"type": "text", "text": "Compare the cars."}]}]
        reference = ctx.generate("Image1 <ImageHere>; Image2 <ImageHere>; Compare the cars.", 6,
                                 images=[cars, os.path.join(IMAGES, "cars2.jpg")])
        assert chat(server, two, max_tokens=6, extra_body={"ignore_eos": True}).choices[0].message.content == \
            detokenize(server, reference)
        # A video.
        video = os.path.join(VIDEOS, "landscape.mp4")
        reference = detokenize(server, ctx.generate("Describe this video.", 6, video=video))
        for url in (video, data_url(video, "video/mp4")):
            message = [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": url}},
                                                    {"type": "text", "text": "Describe this video."}]}]
            answer = chat(server, message, max_tokens=6, extra_body={"ignore_eos": True})
            assert answer.choices[0].message.content == reference, (answer, reference)
        # Two turns, the image in the first: the template with history, the image first (the one-image rule).
        turns = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": cars}},
                                              {"type": "text", "text": "What car is this?"}]},
                 {"role": "assistant", "content": "A red sports car."},
                 {"role": "user", "content": "What colour are its wheels?"}]
        prompt = (f"{START_OF_TURN}user\nWhat car is this?{END_OF_TURN}\n{START_OF_TURN}assistant\nA red sports car."
                  f"{END_OF_TURN}\n{START_OF_TURN}user\nWhat colour are its wheels?{END_OF_TURN}\n"
                  f"{START_OF_TURN}assistant\n")
        reference = detokenize(server, ctx.generate(prompt, 8, chat=False, images=[cars]))
        assert chat(server, turns, extra_body={"ignore_eos": True}).choices[0].message.content == reference

        # /v1/completions: a string (no template) and token ids, plain and streamed.
        reference = detokenize(server, ctx.generate("The city at night", 8, chat=False))
        completion = server.client.completions.create(model="model", prompt="The city at night", max_tokens=8,
                                                      temperature=0, extra_body={"ignore_eos": True})
        assert completion.choices[0].text == reference and completion.usage.completion_tokens == 8, completion
        stream = server.client.completions.create(model="model", prompt="The city at night", max_tokens=8,
                                                  temperature=0, stream=True, extra_body={"ignore_eos": True})
        assert "".join(c.choices[0].text for c in stream if c.choices) == reference
        ids = httpx.post(server.url + "/tokenize", json={"prompt": "The city at night"}).json()["tokens"]
        completion = server.client.completions.create(model="model", prompt=ids, max_tokens=8, temperature=0,
                                                      extra_body={"ignore_eos": True})
        assert completion.choices[0].text == reference, completion
        # /tokenize counts image positions too.
        counted = httpx.post(server.url + "/tokenize", json={"messages": two}).json()
        assert counted["media_positions"] > 0 and counted["count"] == counted["text_tokens"] + counted["media_positions"]

        # n > 1: seeded sampling, one seed per choice; greedy choices are equal.
        answer = chat(server, hello, n=3, temperature=0.9, seed=7, max_tokens=10)
        assert len(answer.choices) == 3 and [c.index for c in answer.choices] == [0, 1, 2], answer
        again = chat(server, hello, n=3, temperature=0.9, seed=7, max_tokens=10)
        assert [c.message.content for c in answer.choices] == [c.message.content for c in again.choices]
        assert 3 <= answer.usage.completion_tokens <= 30, answer.usage
        text = {c.index: "" for c in answer.choices}
        for chunk in server.client.chat.completions.create(model="model", messages=hello, n=3, temperature=0.9,
                                                           seed=7, max_tokens=10, stream=True):
            for choice in chunk.choices:
                text[choice.index] += choice.delta.content or ""
        assert [text[i] for i in range(3)] == [c.message.content for c in answer.choices], text

        # A stop string: the text ends before it, finish_reason stop, streamed and not alike.
        full = chat(server, hello, max_tokens=12, extra_body={"ignore_eos": True}).choices[0].message.content
        stop = full[len(full) // 2: len(full) // 2 + 2]
        cut = chat(server, hello, max_tokens=12, stop=[stop], extra_body={"ignore_eos": True}).choices[0]
        assert cut.message.content == full[:full.index(stop)] and cut.finish_reason == "stop", (cut, full, stop)
        text, finish, _, _ = streamed(server, hello, max_tokens=12, stop=stop, extra_body={"ignore_eos": True})
        assert text == cut.message.content and finish == "stop", (text, cut)
        # logprobs: each token's and the 3 likeliest, as the log-softmax of ixc-generate's logits at the positions that
        # chose them (the prompt and the generated tokens before each, prefilled in one process).
        ids = httpx.post(server.url + "/tokenize", json={"messages": hello}).json()["tokens"]
        generated = ctx.generate("Describe the skyline of Dubai at night.", 6)
        expected = ctx.log_softmax(ids + generated[:-1])[len(ids) - 1:]
        answer = chat(server, hello, max_tokens=6, logprobs=True, top_logprobs=3, extra_body={"ignore_eos": True})
        content = answer.choices[0].logprobs.content
        assert len(content) == 6, content
        for i, entry in enumerate(content):
            likeliest = numpy.argsort(-expected[i], kind="stable")[:3]
            assert abs(entry.logprob - expected[i][generated[i]]) < 1e-3, (i, entry, expected[i][generated[i]])
            assert [abs(t.logprob - expected[i][k]) < 1e-3 for t, k in zip(entry.top_logprobs, likeliest)] == [True] * 3
            assert entry.top_logprobs[0].bytes == entry.bytes, entry  # greedy: the chosen token is the likeliest
        assert b"".join(bytes(e.bytes) for e in content).decode() == answer.choices[0].message.content
        # Streamed, the chunks' logprobs add up to the same list; /v1/completions gives the legacy shape.
        pieces = []
        for chunk in server.client.chat.completions.create(model="model", messages=hello, max_tokens=6, temperature=0,
                                                           logprobs=True, top_logprobs=3, stream=True,
                                                           extra_body={"ignore_eos": True}):
            for choice in chunk.choices:
                pieces += choice.logprobs.content if choice.logprobs else []
        assert [(e.bytes, round(e.logprob, 4)) for e in pieces] == [(e.bytes, round(e.logprob, 4)) for e in content]
        completion = server.client.completions.create(model="model", prompt=ids, max_tokens=6, temperature=0,
                                                      logprobs=2, extra_body={"ignore_eos": True})
        legacy = completion.choices[0].logprobs
        assert [round(x, 4) for x in legacy.token_logprobs] == [round(e.logprob, 4) for e in content], legacy
        assert len(legacy.top_logprobs[0]) <= 2 and legacy.text_offset[0] == 0, legacy
        # The version and the health.
        assert httpx.get(server.url + "/version").json()["version"]
        print("api: chat, stream, images, video, two turns, completions, n, stop, tokenize, logprobs: as ixc-generate")
    finally:
        assert server.stop() == 0, server.output()


def cli_text(ctx, *args):
    """What ixc-generate prints after "text: " (a task's page: several lines), and its generated ids."""
    out = subprocess.run([os.path.join(ctx.build, "tools", "ixc-generate"), "--model", ctx.model, *args], check=True,
                         capture_output=True, text=True, env=ctx.env).stdout
    ids = [int(x) for x in out.split("generated ids: ")[1].split("\n")[0].split(",") if x]
    return out.split("\ntext: ", 1)[1][:-1], ids


def test_compose(ctx):
    """Beam search (num_beams) and the composition tasks (ixc_task) through the official client: the same text as
    ixc-generate's --num-beams and --task, streamed as one chunk at the end; settings a request gives win."""
    server = Server(ctx.build, ctx.model, ctx.work)
    try:
        hello = [{"role": "user", "content": "Describe the skyline of Dubai at night."}]
        _, ids = cli_text(ctx, "--chat", "--prompt", hello[0]["content"], "--num-beams", "3",
                          "--repetition-penalty", "1.005", "--max-new-tokens", "8", "--ignore-eos")
        beams = {"num_beams": 3, "repetition_penalty": 1.005, "ignore_eos": True}
        answer = chat(server, hello, extra_body=beams)
        assert answer.choices[0].message.content == detokenize(server, ids), (answer, ids)
        assert answer.usage.completion_tokens == 8 and answer.choices[0].finish_reason == "length", answer
        greedy = chat(server, hello, extra_body={"repetition_penalty": 1.005, "ignore_eos": True})
        assert greedy.choices[0].message.content != answer.choices[0].message.content, "beams gave greedy's text"
        text, finish, _, chunks = streamed(server, hello, extra_body=beams)
        assert text == answer.choices[0].message.content and finish == "length", text
        # The best beam comes whole at the end: the role, then at most a few text chunks, the end and the usage.
        assert chunks <= 6, chunks

        inst = "A website for Research institutions. The name is Shanghai AI lab."
        with open(os.path.join(DATA, "resume.md")) as f:
            resume = f.read()
        screenshot = os.path.join(IMAGES, "screenshot.jpg")
        cases = [("write_webpage", inst, [], ["--prompt", inst]),
                 ("resume_2_webpage", resume, [], ["--prompt", resume]),
                 ("screen_2_webpage", "Make it.", [screenshot], ["--image", screenshot]),
                 ("write_article", inst, [], ["--prompt", inst, "--seed", "8192"])]
        for task, text, images, args in cases:
            page, _ = cli_text(ctx, "--task", task, "--max-new-tokens", "6", *args)
            content = [{"type": "image_url", "image_url": {"url": path}} for path in images]
            content.append({"type": "text", "text": text})
            answer = server.client.chat.completions.create(
                model="model", messages=[{"role": "user", "content": content}], max_tokens=6, seed=8192,
                extra_body={"ixc_task": task})
            assert answer.choices[0].message.content == page, (task, answer, page)
            assert "UNUSED_TOKEN" not in page, page
        # A request's own settings win over the task's: here greedy, no beams.
        page, _ = cli_text(ctx, "--task", "write_webpage", "--prompt", inst, "--max-new-tokens", "6", "--num-beams",
                           "1", "--repetition-penalty", "1.0")
        answer = chat(server, [{"role": "user", "content": inst}], max_tokens=6,
                      extra_body={"ixc_task": "write_webpage", "num_beams": 1, "repetition_penalty": 1.0})
        assert answer.choices[0].message.content == page, (answer, page)
        print("compose: beams and the four tasks through the API equal ixc-generate's")
    finally:
        assert server.stop() == 0, server.output()


def test_concurrency(ctx):
    server = Server(ctx.build, ctx.model, ctx.work)
    cars = [os.path.join(IMAGES, f"cars{i}.jpg") for i in (1, 2, 3)]
    kinds = [[{"role": "user", "content": f"Tell me about city number {i}."}] for i in range(5)]
    kinds += [[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": image}},
                                            {"type": "text", "text": "What is this?"}]}] for image in cars]
    kinds.append([{"role": "user", "content": [{"type": "video_url", "video_url": {"url": os.path.join(
        VIDEOS, "landscape.mp4")}}, {"type": "text", "text": "Describe it."}]}])
    try:
        alone = [chat(server, m, max_tokens=6, extra_body={"ignore_eos": True}).choices[0].message.content
                 for m in kinds]
        # 64 clients connect at once: the listening socket must queue them all (httplib's own backlog is 5: the
        # rest saw dropped SYNs and, rarely, reset connections). `ss` prints a listener's backlog as its Send-Q.
        listener = subprocess.run(["ss", "-Hltn", f"sport = :{server.port}"], capture_output=True, text=True,
                                  check=True).stdout.split()
        assert int(listener[2]) >= 64, f"the API listens with a backlog of {listener[2]}"
        results, errors = {}, []

        def client(i):
            try:
                text, finish, usage, _ = streamed(server, kinds[i % len(kinds)], max_tokens=6,
                                                  extra_body={"ignore_eos": True})
                assert i not in results
                results[i] = (text, finish, usage.completion_tokens)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(f"{i}: {e!r}")

        threads = [threading.Thread(target=client, args=(i,)) for i in range(64)]
        start = time.time()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert sorted(results) == list(range(64)), sorted(results)
        for i, (text, finish, tokens) in results.items():
            assert text == alone[i % len(kinds)] and finish == "length" and tokens == 6, (i, text, alone)
        print(f"concurrency: 64 streams (text, images, video) in {time.time() - start:.1f} s, each as when alone "
              f"(listen backlog {listener[2]})")
    finally:
        assert server.stop() == 0, server.output()


def wait_idle(server, seconds, when):
    """Until no KV block, image or running sequence is in use (the prefix and image caches may keep what they hold
    for reuse); fails after `seconds`."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        m = server.metrics()
        if m["ixc_rank_kv_blocks_used"] == 0 and m["ixc_image_cache_bytes_in_use"] == 0 and m["ixc_num_requests_running"] == 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"not idle {when}: {m}")


def test_cancel(ctx):
    server = Server(ctx.build, ctx.model, ctx.work)
    cars = os.path.join(IMAGES, "cars1.jpg")
    try:
        def drop(messages):
            with httpx.stream("POST", server.url + "/v1/chat/completions", timeout=60,
                              json={"messages": messages, "max_tokens": 4000, "stream": True, "ignore_eos": True}) as r:
                assert r.status_code == 200
                for n, _ in enumerate(r.iter_lines()):
                    if n >= 6:
                        break  # the client goes away mid-stream
        text = [{"role": "user", "content": "Hello there"}]
        image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": cars}}, {"type": "text",
                                                                                                   "text": "Hi"}]}]
        threads = [threading.Thread(target=drop, args=(m,)) for m in (text, image, text, image)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wait_idle(server, 30, "after the clients left")
        assert chat(server, text).choices[0].finish_reason in ("length", "stop")

        # Clients that give up on a non-streamed answer (a read timeout closes the connection): 20000 tokens would take
        # minutes; the server sees them gone within a second and frees what they hold.
        def give_up(messages):
            try:
                httpx.post(server.url + "/v1/chat/completions", timeout=2,
                           json={"messages": messages, "max_tokens": 20000, "ignore_eos": True, "n": 2})
                raise AssertionError("a 20000-token answer came within 2 seconds")
            except httpx.ReadTimeout:
                pass
        threads = [threading.Thread(target=give_up, args=(m,)) for m in (text, image)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        left = time.time()
        wait_idle(server, 15, "15 s after non-streaming clients left")
        assert chat(server, text).choices[0].finish_reason in ("length", "stop")
        print(f"cancel: 4 dropped streams and 2 abandoned non-streamed requests (n = 2) freed their KV blocks and "
              f"images ({time.time() - left:.1f} s after the last left); the next request is served")
    finally:
        assert server.stop() == 0, server.output()


def bad_cases(work):
    """(name, method, path, body or raw bytes, headers, expected status)."""
    fifo = os.path.join(work, "fifo.jpg")
    if not os.path.exists(fifo):
        os.mkfifo(fifo)
    outside = tempfile.mkdtemp(prefix="ixc-outside-")
    secret = os.path.join(outside, "secret.jpg")
    shutil.copy(os.path.join(IMAGES, "cars1.jpg"), secret)
    link = os.path.join(work, "escape.jpg")
    if not os.path.lexists(link):
        os.symlink(secret, link)
    with open(os.path.join(work, "not_image.jpg"), "w") as f:
        f.write("this is text, not an image")
    with open(os.path.join(IMAGES, "cars1.jpg"), "rb") as f:
        jpeg = f.read()
    with open(os.path.join(work, "truncated.jpg"), "wb") as f:
        f.write(jpeg[:len(jpeg) // 3])
    corrupt = bytearray(jpeg)
    corrupt[200:4000] = b"\x00" * 3800
    # A PNG header that claims 100000 x 100000 pixels (a pixel bomb), nothing behind it.
    bomb = (b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + (100000).to_bytes(4, "big") * 2 +
            b"\x08\x02\x00\x00\x00" + b"\x00\x00\x00\x00")

    def user(*parts):
        return {"messages": [{"role": "user", "content": list(parts)}], "max_tokens": 2}

    def image(url):
        return {"type": "image_url", "image_url": {"url": url}}

    def video(url):
        return {"type": "video_url", "video_url": {"url": url}}

    def b64(data, mime="image/jpeg"):
        return f"data:{mime};base64," + base64.b64encode(bytes(data)).decode()

    ok = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    chat_path = "/v1/chat/completions"
    cases = [
        ("malformed json", "POST", chat_path, b'{"messages": [', None, 400),
        ("not an object", "POST", chat_path, [1, 2], None, 400),
        ("empty body", "POST", chat_path, b"", None, 400),
        ("no messages", "POST", chat_path, {"max_tokens": 2}, None, 400),
        ("messages not a list", "POST", chat_path, {"messages": "hi"}, None, 400),
        ("empty messages", "POST", chat_path, {"messages": []}, None, 400),
        ("message not an object", "POST", chat_path, {"messages": ["hi"]}, None, 400),
        ("no role", "POST", chat_path, {"messages": [{"content": "hi"}]}, None, 400),
        ("bad role", "POST", chat_path, {"messages": [{"role": "wizard", "content": "hi"}]}, None, 400),
        ("tool role", "POST", chat_path, {"messages": [{"role": "tool", "content": "hi"}]}, None, 400),
        ("no content", "POST", chat_path, {"messages": [{"role": "user"}]}, None, 400),
        ("content a number", "POST", chat_path, {"messages": [{"role": "user", "content": 5}]}, None, 400),
        ("empty parts", "POST", chat_path, {"messages": [{"role": "user", "content": []}]}, None, 400),
        ("part without type", "POST", chat_path, user({"text": "hi"}), None, 400),
        ("unknown part", "POST", chat_path, user({"type": "audio_url", "audio_url": {"url": "x"}}), None, 400),
        ("last turn assistant", "POST", chat_path,
         {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}, None, 400),
        ("assistant first", "POST", chat_path, {"messages": [{"role": "assistant", "content": "b"}]}, None, 400),
        ("image in system", "POST", chat_path,
         {"messages": [{"role": "system", "content": [image(b64(jpeg))]}, {"role": "user", "content": "a"}]}, None,
         400),
        ("image_url without url", "POST", chat_path, user({"type": "image_url", "image_url": {}}), None, 400),
        ("beams that sample", "POST", chat_path, dict(ok, num_beams=2, temperature=0.7), None, 400),
        ("beams and n", "POST", chat_path, dict(ok, num_beams=2, n=2), None, 400),
        ("beams and logprobs", "POST", chat_path, dict(ok, num_beams=2, logprobs=True), None, 400),
        ("too many beams", "POST", chat_path, dict(ok, num_beams=17), None, 400),
        ("unknown task", "POST", chat_path, dict(ok, ixc_task="poem"), None, 400),
        ("screenshot missing", "POST", chat_path, dict(ok, ixc_task="screen_2_webpage"), None, 400),
        ("task with history", "POST", chat_path,
         {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                       {"role": "user", "content": "c"}], "ixc_task": "write_webpage"}, None, 400),
        ("task on completions", "POST", "/v1/completions", {"prompt": "a", "ixc_task": "write_article"}, None, 400),
        ("task and n", "POST", chat_path, dict(ok, ixc_task="write_article", n=2), None, 400),
        ("task and logprobs", "POST", chat_path, dict(ok, ixc_task="write_article", logprobs=True), None, 400),
        ("bad base64", "POST", chat_path, user(image("data:image/jpeg;base64,@@@not base64@@@")), None, 400),
        ("data url without base64", "POST", chat_path, user(image("data:image/jpeg,abc")), None, 400),
        ("data url without comma", "POST", chat_path, user(image("data:image/jpeg;base64")), None, 400),
        ("truncated jpeg", "POST", chat_path, user(image(b64(jpeg[:len(jpeg) // 3]))), None, 400),
        ("truncated jpeg path", "POST", chat_path, user(image(os.path.join(work, "truncated.jpg"))), None, 400),
        ("corrupt jpeg", "POST", chat_path, user(image(b64(corrupt))), None, 400),
        ("pixel bomb", "POST", chat_path, user(image(b64(bomb, "image/png"))), None, 400),
        ("video too long", "POST", chat_path, user(video(os.path.join(VIDEOS, "many_frames.mkv"))), None, 400),
        ("video truncated", "POST", chat_path, user(video(os.path.join(VIDEOS, "truncated.mp4"))), None, 400),
        ("video empty", "POST", chat_path, user(video(os.path.join(VIDEOS, "empty.mp4"))), None, 400),
        ("video without frames", "POST", chat_path, user(video(os.path.join(VIDEOS, "audio_only.mka"))), None, 400),
        ("video variable rate", "POST", chat_path, user(video(os.path.join(VIDEOS, "variable_rate.mkv"))), None, 400),
        ("video as image", "POST", chat_path, user(image(os.path.join(VIDEOS, "landscape.mp4"))), None, 400),
        ("text as image", "POST", chat_path, user(image(b64(b"hello world, not an image"))), None, 400),
        ("text file as image", "POST", chat_path, user(image(os.path.join(work, "not_image.jpg"))), None, 400),
        ("disallowed path", "POST", chat_path, user(image("/etc/passwd")), None, 400),
        ("traversal", "POST", chat_path, user(image(os.path.join(DATA, "..", "..", "README.md"))), None, 400),
        ("symlink escape", "POST", chat_path, user(image(link)), None, 400),
        ("fifo", "POST", chat_path, user(image(fifo)), None, 400),
        ("device", "POST", chat_path, user(image("/dev/zero")), None, 400),
        ("missing file", "POST", chat_path, user(image(os.path.join(DATA, "nope.jpg"))), None, 400),
        ("relative path", "POST", chat_path, user(image("images/cars1.jpg")), None, 400),
        ("directory", "POST", chat_path, user(image(IMAGES)), None, 400),
        ("http url", "POST", chat_path, user(image("http://example.com/a.jpg")), None, 400),
        ("https url", "POST", chat_path, user(image("https://example.com/a.jpg")), None, 400),
        ("ftp url", "POST", chat_path, user(image("ftp://example.com/a.jpg")), None, 400),
        ("too many images", "POST", chat_path, user(*[image(os.path.join(IMAGES, "cars1.jpg"))] * 17), None, 400),
        ("more placeholders than images", "POST", chat_path,
         user({"type": "text", "text": "<ImageHere> <ImageHere>"}, image(os.path.join(IMAGES, "cars1.jpg"))), None,
         400),
        ("context overflow", "POST", chat_path,
         {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 98304}, None, 400),
        ("temperature NaN", "POST", chat_path, b'{"messages": [{"role": "user", "content": "Hi"}], "temperature": NaN}',
         None, 400),
        ("temperature negative", "POST", chat_path, {**ok, "temperature": -1}, None, 400),
        ("temperature string", "POST", chat_path, {**ok, "temperature": "hot"}, None, 400),
        ("top_p zero", "POST", chat_path, {**ok, "top_p": 0}, None, 400),
        ("top_p above one", "POST", chat_path, {**ok, "top_p": 1.5}, None, 400),
        ("top_k fraction", "POST", chat_path, {**ok, "top_k": 2.5}, None, 400),
        ("repetition_penalty zero", "POST", chat_path, {**ok, "repetition_penalty": 0}, None, 400),
        ("max_tokens zero", "POST", chat_path, {**ok, "max_tokens": 0}, None, 400),
        ("max_tokens huge", "POST", chat_path, {**ok, "max_tokens": 10 ** 30}, None, 400),
        ("max_tokens string", "POST", chat_path, {**ok, "max_tokens": "8"}, None, 400),
        ("n zero", "POST", chat_path, {**ok, "n": 0}, None, 400),
        ("n too many", "POST", chat_path, {**ok, "n": 100}, None, 400),
        ("stream not bool", "POST", chat_path, {**ok, "stream": "yes"}, None, 400),
        ("stream_options without stream", "POST", chat_path, {**ok, "stream_options": {"include_usage": True}}, None,
         400),
        ("stop not strings", "POST", chat_path, {**ok, "stop": [1, 2]}, None, 400),
        ("empty stop", "POST", chat_path, {**ok, "stop": [""]}, None, 400),
        ("seed string", "POST", chat_path, {**ok, "seed": "abc"}, None, 400),
        ("top_logprobs without logprobs", "POST", chat_path, {**ok, "top_logprobs": 2}, None, 400),
        ("top_logprobs too many", "POST", chat_path, {**ok, "logprobs": True, "top_logprobs": 21}, None, 400),
        ("logprobs not bool", "POST", chat_path, {**ok, "logprobs": 3}, None, 400),
        ("completion logprobs negative", "POST", "/v1/completions", {"prompt": "Hi", "logprobs": -1}, None, 400),
        ("lora_mode unknown", "POST", chat_path, {**ok, "lora_mode": "poetry"}, None, 400),
        ("hd_num zero", "POST", chat_path, {**ok, "hd_num": 0}, None, 400),
        ("presence_penalty", "POST", chat_path, {**ok, "presence_penalty": 1.0}, None, 400),
        ("tools", "POST", chat_path, {**ok, "tools": [{"type": "function"}]}, None, 400),
        ("unknown model", "POST", chat_path, {**ok, "model": "gpt-4"}, None, 404),
        ("huge body", "POST", chat_path, b'{"x": "' + b"a" * (3 << 20) + b'"}', None, 413),
        ("wrong content type", "POST", chat_path, b"messages=hi", {"Content-Type": "text/plain"}, 415),
        ("form content type", "POST", chat_path, b"a=b", {"Content-Type": "application/x-www-form-urlencoded"}, 415),
        ("GET on chat", "GET", chat_path, None, None, 405),
        ("PUT on completions", "PUT", "/v1/completions", ok, None, 405),
        ("POST on models", "POST", "/v1/models", ok, None, 405),
        ("DELETE on health", "DELETE", "/health", None, None, 405),
        ("unknown route", "GET", "/v2/nothing", None, None, 404),
        ("unknown POST route", "POST", "/v1/embeddings", ok, None, 404),
        ("completion without prompt", "POST", "/v1/completions", {"max_tokens": 2}, None, 400),
        ("completion prompt number", "POST", "/v1/completions", {"prompt": 5}, None, 400),
        ("completion ids out of vocab", "POST", "/v1/completions", {"prompt": [1, 99999999]}, None, 400),
        ("completion negative id", "POST", "/v1/completions", {"prompt": [1, -5]}, None, 400),
        ("completion empty prompt", "POST", "/v1/completions", {"prompt": ""}, None, 400),
        ("completion echo", "POST", "/v1/completions", {"prompt": "a", "echo": True}, None, 400),
        ("tokenize without prompt", "POST", "/tokenize", {"x": 1}, None, 400),
        ("detokenize bad ids", "POST", "/detokenize", {"tokens": ["a"]}, None, 400),
    ]
    return cases


def request(server, method, path, body, headers):
    if body is None:
        content = None
    elif isinstance(body, (bytes, bytearray)):
        content = bytes(body)
    else:
        content = json.dumps(body).encode()
    headers = headers or ({"Content-Type": "application/json"} if content is not None else {})
    return httpx.request(method, server.url + path, content=content, headers=headers, timeout=60)


def test_bad_input(ctx):
    # many_frames.mkv has 80 frames, landscape.mp4 (the good videos of the other tests) 75.
    server = Server(ctx.build, ctx.model, ctx.work, extra=["--max-request-mib", "2", "--max-video-frames", "78"])
    try:
        cases = bad_cases(ctx.work)
        assert len(cases) >= 50, len(cases)
        good = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
        for name, method, path, body, headers, status in cases:
            r = request(server, method, path, body, headers)
            assert r.status_code == status, f"{name}: {r.status_code} {r.text[:300]} (wanted {status})"
            error = r.json()["error"]
            assert set(error) == {"message", "type", "param", "code"} and error["message"], (name, error)
            assert error["code"] == status, (name, error)
            after = request(server, "POST", "/v1/chat/completions", good, None)
            assert after.status_code == 200, f"after {name}: {after.status_code} {after.text[:300]}"
        # Messages that name what is wrong.
        r = request(server, "POST", "/v1/chat/completions", {**good, "temperature": -1}, None).json()["error"]
        assert r["param"] == "temperature" and "temperature" in r["message"], r
        r = request(server, "POST", "/v1/chat/completions", {**good, "max_tokens": 98304}, None).json()["error"]
        assert "of text" in r["message"] and "98304" in r["message"], r
        # The API key, when one is set, is checked before anything else.
        print(f"bad_input: {len(cases)} malformed requests, each its 4xx in OpenAI's shape, a good one after each")
    finally:
        assert server.stop() == 0, server.output()
    keyed = Server(ctx.build, ctx.model, ctx.work, extra=["--api-key", "sesame"])
    try:
        r = request(keyed, "POST", "/v1/chat/completions", good, None)
        assert r.status_code == 401 and r.json()["error"]["code"] == 401, r.text
        r = request(keyed, "POST", "/v1/chat/completions", good, {"Content-Type": "application/json",
                                                                 "Authorization": "Bearer sesame"})
        assert r.status_code == 200, r.text
        print("bad_input: 401 without the API key, 200 with it")
    finally:
        assert keyed.stop() == 0, keyed.output()
    # A full queue: 429 with Retry-After, and the request in flight goes on.
    small = Server(ctx.build, ctx.model, ctx.work, extra=["--max-queued-requests", "1"])
    try:
        with httpx.stream("POST", small.url + "/v1/chat/completions", timeout=120,
                          json={"messages": [{"role": "user", "content": "A long story"}], "max_tokens": 300,
                                "stream": True, "ignore_eos": True,
                                "stream_options": {"include_usage": True}}) as first:
            lines = first.iter_lines()
            next(lines)
            r = request(small, "POST", "/v1/chat/completions", good, None)
            assert r.status_code == 429 and r.headers.get("Retry-After") == "1", (r.status_code, r.text)
            assert r.json()["error"]["code"] == 429, r.text
            # Tokens that arrive between two reads of the stream share a chunk: count them by the usage.
            chunks = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
            assert chunks[-1]["usage"]["completion_tokens"] == 300, chunks[-1]
        assert request(small, "POST", "/v1/chat/completions", good, None).status_code == 200
        print("bad_input: past --max-queued-requests a 429 with Retry-After; the running request finished")
    finally:
        assert small.stop() == 0, small.output()


def test_drain(ctx):
    server = Server(ctx.build, ctx.model, ctx.work, extra=["--drain-timeout-s", "120"])
    results, errors = {}, []

    def client(i):
        try:
            results[i] = streamed(server, [{"role": "user", "content": f"Story {i}"}], max_tokens=1500,
                                  extra_body={"ignore_eos": True})
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    server.signal_coordinator(signal.SIGTERM)
    time.sleep(0.1)
    r = request(server, "POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}]}, None)
    assert r.status_code == 503, r.text
    for t in threads:
        t.join()
    code = server.wait(120)
    assert not errors, errors
    assert len(results) == 4, results
    assert all(finish == "length" and usage.completion_tokens == 1500 for _, finish, usage, _ in results.values()), \
        results
    assert code == 0, server.output()
    print("drain: 4 streams in flight finished after SIGTERM, a new request got 503, the job exited 0")
    # A drain that runs out of time: what is left ends with finish_reason abort, and the job still exits 0.
    server = Server(ctx.build, ctx.model, ctx.work, extra=["--drain-timeout-s", "1"])
    results.clear()
    threads = [threading.Thread(target=lambda: results.setdefault(0, streamed(
        server, [{"role": "user", "content": "A long story"}], max_tokens=20000, extra_body={"ignore_eos": True})))]
    threads[0].start()
    time.sleep(1.0)
    server.signal_coordinator(signal.SIGTERM)
    threads[0].join(60)
    code = server.wait(60)
    assert results[0][1] == "abort" and code == 0, (results, server.output())
    print("drain: past --drain-timeout-s the stream ended with finish_reason abort; exit 0")


def test_failure(ctx):
    for signum, name in ((signal.SIGSTOP, "silent"), (signal.SIGKILL, "killed")):
        server = Server(ctx.build, ctx.model, ctx.work)
        outcome = {}

        def client():
            try:
                streamed(server, [{"role": "user", "content": "A long story"}], max_tokens=20000,
                         extra_body={"ignore_eos": True})
                outcome["error"] = "the stream ended without an error"
            except openai.APIError as e:
                outcome["error"] = str(e)

        def waiting_client():  # not streamed: its answer, when the engine fails, is a 503 (the server failed)
            r = httpx.post(server.url + "/v1/chat/completions", timeout=120, json={
                "messages": [{"role": "user", "content": "Another long story"}], "max_tokens": 20000,
                "ignore_eos": True})
            outcome["waiting"] = (r.status_code, r.text)

        thread = threading.Thread(target=client)
        thread.start()
        waiting = threading.Thread(target=waiting_client)
        waiting.start()
        time.sleep(1.0)
        workers = server.pids("ixc-worker")
        victim = workers[-1]
        start = time.time()
        os.kill(victim, signum)
        health = None
        while time.time() - start < 30 and server.job.poll() is None:
            try:
                health = httpx.get(server.url + "/health", timeout=2).status_code
                if health == 503:
                    break
            except httpx.HTTPError:
                break
            time.sleep(0.2)
        thread.join(60)
        waiting.join(60)
        code = server.wait(60)
        elapsed = time.time() - start
        if signum == signal.SIGSTOP:
            os.kill(victim, signal.SIGKILL)
        assert code != 0 and elapsed < 60, (code, elapsed, server.output())
        assert health == 503, (health, server.output())
        assert "rank 3" in outcome.get("error", "") or "rank 3" in server.output(), (outcome, server.output())
        status, text = outcome.get("waiting", (None, ""))
        assert status == 503 and "rank 3" in text, (status, text[:300])
        print(f"failure: a {name} worker: the stream's error names the rank ({outcome['error'][:90]}...), "
              f"/health 503, exit {code} after {elapsed:.1f} s")


def test_launch(ctx):
    start = time.time()
    run = subprocess.run([os.path.join(ROOT, "deploy", "launch.sh"), "--tp", "1", "--sp", "1", "--vision", "1",
                          "--build", ctx.build, "--", "--model", ctx.model, "--serve", "--bogus-flag", "1"],
                         capture_output=True, text=True, timeout=60, env=ctx.env)
    assert run.returncode != 0 and "bogus_flag" in run.stderr, run.stderr[-2000:]
    # A model without its tokenizer cannot be served (the API speaks text): the message names the file.
    bare = os.path.join(ctx.work, "no-tokenizer")
    shutil.copytree(ctx.model, bare, ignore=shutil.ignore_patterns("tokenizer.model"))
    run = subprocess.run([os.path.join(ROOT, "deploy", "launch.sh"), "--tp", "1", "--sp", "1", "--vision", "1",
                          "--build", ctx.build, "--", "--model", bare, "--serve", "--port", "0"],
                         capture_output=True, text=True, timeout=60, env=ctx.env)
    assert run.returncode != 0 and "tokenizer.model: not found; --serve needs" in run.stderr, run.stderr[-2000:]
    run = subprocess.run([os.path.join(ctx.build, "coordinator", "ixc-coordinator"), "--help"], capture_output=True,
                         text=True, timeout=30)
    assert run.returncode == 0 and "--drain_timeout_s (" in run.stdout, run.stdout[-500:] + run.stderr[-500:]
    run = subprocess.run([os.path.join(ctx.build, "tools", "ixc-generate"), "--help"], capture_output=True,
                         text=True, timeout=30)
    assert run.returncode == 0 and "--max_new_tokens (" in run.stdout, run.stdout[-500:] + run.stderr[-500:]
    print(f"launch: a bad flag and a missing tokenizer ended the job in {time.time() - start:.1f} s with their "
          "messages; --help lists the flags")


def test_prefix_cache(ctx):
    """A chat's second turn reuses its first turn's prefix (usage.prompt_tokens_details.cached_tokens) and image
    embeddings, and answers as a server without the caches does; a changed file under the same path is not taken for
    the old one; the metrics count the queries and the hits."""
    # max_position_embeddings 4096: under 64 (the tests' model) dynamic NTK rotates a prompt by its length, and no
    # prefix of another length may be reused.
    model = os.path.join(ctx.work, "model-4096")
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_tiny_checkpoint.py"), "--preset", "tiny-kv4",
                    "--vocab", "92544", "--dtype", "bf16", "--max-position-embeddings", "4096", "--tokenizer",
                    os.path.join(DATA, "tokenizer.model"), "--out", model], check=True, stdout=subprocess.DEVNULL)
    cars = os.path.join(IMAGES, "cars1.jpg")
    first = [{"role": "system", "content": "You are a car expert."},
             {"role": "user", "content": [{"type": "image_url", "image_url": {"url": cars}},
                                          {"type": "text", "text": "What is in the picture?"}]}]

    def conversation(server):
        one = chat(server, first, max_tokens=6, extra_body={"ignore_eos": True})
        second = first + [{"role": "assistant", "content": one.choices[0].message.content},
                          {"role": "user", "content": "And what colour are they?"}]
        text, _, usage, _ = streamed(server, second, max_tokens=6, extra_body={"ignore_eos": True})
        return one, text, usage

    served = ["--served-model-name", "model"]
    plain = Server(ctx.build, model, ctx.work, extra=[*served, "--enable-prefix-caching=false"])
    try:
        plain_one, plain_text, plain_usage = conversation(plain)
        assert plain_usage.prompt_tokens_details.cached_tokens == 0, plain_usage
    finally:
        assert plain.stop() == 0, plain.output()

    server = Server(ctx.build, model, ctx.work, extra=served)
    try:
        one, text, usage = conversation(server)
        assert one.usage.prompt_tokens_details.cached_tokens == 0, one.usage  # a fresh server
        assert one.choices[0].message.content == plain_one.choices[0].message.content, (one, plain_one)
        assert text == plain_text, (text, plain_text)
        cached = usage.prompt_tokens_details.cached_tokens
        assert 0 < cached < usage.prompt_tokens and cached % 16 == 0, usage
        m = server.metrics()
        assert m["ixc_image_cache_queries_total"] == 2 and m["ixc_image_cache_hits_total"] == 1, m
        assert m["ixc_prefix_cache_hits_total"] == cached, m
        assert m["ixc_prefix_cache_queries_total"] == one.usage.prompt_tokens + usage.prompt_tokens, m
        print(f"prefix cache: the second turn reused {cached} of {usage.prompt_tokens} prompt positions and the image, "
              "and answered as without the caches")

        # The same path with new contents: the new pixels, not the cached ones.
        path = os.path.join(ctx.work, "changing.jpg")
        question = "What is in the picture?"
        message = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": path}},
                                                {"type": "text", "text": question}]}]
        answers = {}
        for name in ("cars1.jpg", "cars2.jpg"):
            shutil.copyfile(os.path.join(IMAGES, name), path)
            answers[name] = chat(server, message, extra_body={"ignore_eos": True}).choices[0].message.content
            expected = detokenize(server, ctx.generate(question, 8, images=[os.path.join(IMAGES, name)], model=model))
            assert answers[name] == expected, (name, answers[name], expected)
        assert answers["cars1.jpg"] != answers["cars2.jpg"], answers  # the test can tell the two apart
        m = server.metrics()
        assert m["ixc_image_cache_queries_total"] == 4 and m["ixc_image_cache_hits_total"] == 2, m  # cars1 again
        print("a changed file under the same path was encoded again; the old pixels stayed out")
        wait_idle(server, 30, "after the conversations")
    finally:
        assert server.stop() == 0, server.output()


TESTS = {name[5:]: fn for name, fn in globals().items() if name.startswith("test_")}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("build")
    parser.add_argument("--only", choices=sorted(TESTS))
    args = parser.parse_args()
    ctx = Context(os.path.abspath(args.build))
    try:
        for name, fn in TESTS.items():
            if args.only in (None, name):
                fn(ctx)
    finally:
        shutil.rmtree(ctx.work, ignore_errors=True)


if __name__ == "__main__":
    main()
