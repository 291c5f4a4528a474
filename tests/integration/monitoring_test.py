#!/usr/bin/env python3
"""Monitoring against the real tools: promtool checks the shipped Prometheus config and alert rules and runs their unit
tests; the Grafana dashboard agrees with its generator. Then Debian's prometheus server (a free port, a temporary
TSDB, a 1 s scrape) watches a T2S2V1 cluster on a tiny checkpoint through a burst of text, image and video requests,
a dropped stream and a bad request, and:
  * every PromQL query of the dashboard runs through Prometheus's HTTP API without error and returns series;
  * the token counters equal the sums of the responses' usage, and the success and abort counters and the
    histograms' counts equal the requests sent;
  * the per-rank series cover every rank of the layout;
  * promtool check metrics passes on a scrape of /metrics.
It also measures the engine's mean step time over the same decode workload without and with the 1 s scrape.

    python3 tests/integration/monitoring_test.py BUILD_DIR
"""
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import httpx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serving_test import IMAGES, ROOT, VIDEOS, Context, Server, free_port, wait_ready  # noqa: E402

MONITORING = os.path.join(ROOT, "monitoring")
LAYOUT = dict(tp=2, sp=2, vision=1)


def check_shipped_files():
    prometheus = os.path.join(MONITORING, "prometheus")
    for args in (["check", "config", "prometheus.yml"], ["check", "rules", "alerts.yml"],
                 ["test", "rules", "alerts_test.yml"]):
        run = subprocess.run(["promtool", *args], cwd=prometheus, capture_output=True, text=True)
        assert run.returncode == 0, f"promtool {' '.join(args)}:\n{run.stdout}{run.stderr}"
    with open(os.path.join(MONITORING, "grafana", "dashboards", "ixc-cluster.json")) as f:
        committed = json.load(f)
    sys.path.insert(0, os.path.join(MONITORING, "grafana"))
    import make_dashboard
    assert committed == make_dashboard.dashboard(), "dashboards/ixc-cluster.json differs from make_dashboard.py's"
    print("promtool: config, rules and rule unit tests pass; the dashboard matches its generator")
    return committed


class Prometheus:
    def __init__(self, work, target):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = os.path.join(work, "prometheus.yml")
        with open(config, "w") as f:
            f.write(f"global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    f"rule_files:\n  - {os.path.join(MONITORING, 'prometheus', 'alerts.yml')}\n"
                    f"scrape_configs:\n  - job_name: ixc-cluster\n    static_configs:\n"
                    f"      - targets: ['{target}']\n")
        self.log = open(os.path.join(work, "prometheus.log"), "w")
        self.process = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tempfile.mkdtemp(dir=work)}",
             f"--web.listen-address=127.0.0.1:{self.port}"], stdout=self.log, stderr=subprocess.STDOUT)
        wait_ready(self.url + "/-/ready", 60, lambda: self.process.poll() is None,
                   lambda: f"prometheus (exit {self.process.poll()}), log {self.log.name}")

    def query(self, expr):
        r = httpx.get(self.url + "/api/v1/query", params={"query": expr}, timeout=30)
        body = r.json()
        assert r.status_code == 200 and body["status"] == "success", f"{expr}: {r.status_code} {body}"
        return body["data"]["result"]

    def scalar(self, expr):
        result = self.query(expr)
        assert len(result) == 1, f"{expr}: {result}"
        return float(result[0]["value"][1])

    def wait_for_scrape_after(self, moment):
        """Until a scrape later than `moment` (time.time()) is stored."""
        deadline = time.time() + 30
        while time.time() < deadline:
            result = self.query('timestamp(ixc_build_info{job="ixc-cluster"})')
            if result and float(result[0]["value"][1]) > moment + 0.5:
                return
            time.sleep(0.5)
        raise AssertionError("no scrape after the burst")

    def stop(self):
        self.process.terminate()
        self.process.wait(30)
        self.log.close()


def mean_step_seconds(server, workload):
    """The engine's mean step time over `workload`, from ixc_step_duration_seconds."""
    before = server.metrics()
    workload()
    after = server.metrics()
    steps = after["ixc_step_duration_seconds_count"] - before["ixc_step_duration_seconds_count"]
    return (after["ixc_step_duration_seconds_sum"] - before["ixc_step_duration_seconds_sum"]) / steps, steps


def main():
    build = os.path.abspath(sys.argv[1])
    dashboard = check_shipped_files()
    ctx = Context(build)
    server = Server(build, ctx.model, ctx.work, **LAYOUT)
    prometheus = None
    usage = {"prompt": 0, "completion": 0, "requests": 0}
    lock = threading.Lock()

    def ask(messages, tokens=8):
        answer = server.client.chat.completions.create(model="model", messages=messages, max_tokens=tokens,
                                                       temperature=0, extra_body={"ignore_eos": True})
        with lock:
            usage["prompt"] += answer.usage.prompt_tokens
            usage["completion"] += answer.usage.completion_tokens
            usage["requests"] += 1

    def decodes():
        threads = [threading.Thread(target=ask, args=([{"role": "user", "content": f"Tell story {i}."}], 48))
                   for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    try:
        # A step's time without and with a 1 s scrape (the scrape must not stall the engine).
        decodes()  # warm
        without, steps = mean_step_seconds(server, decodes)
        prometheus = Prometheus(ctx.work, f"127.0.0.1:{server.port}")
        time.sleep(2)
        with_scrape, steps_scraped = mean_step_seconds(server, decodes)
        print(f"step time: {without * 1000:.2f} ms without Prometheus ({steps:.0f} steps), "
              f"{with_scrape * 1000:.2f} ms with a 1 s scrape ({steps_scraped:.0f} steps)")

        # The burst: text, images, a video, at once.
        cars = os.path.join(IMAGES, "cars1.jpg")
        video = os.path.join(VIDEOS, "landscape.mp4")
        burst = [[{"role": "user", "content": f"Question {i} about the city."}] for i in range(6)]
        burst += [[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": cars}},
                                                {"type": "text", "text": f"What is in picture {i}?"}]}]
                  for i in range(3)]
        burst.append([{"role": "user", "content": [{"type": "video_url", "video_url": {"url": video}},
                                                   {"type": "text", "text": "Describe the video."}]}])
        threads = [threading.Thread(target=ask, args=(m,)) for m in burst]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        prometheus.wait_for_scrape_after(time.time())
        job = '{job="ixc-cluster"}'
        assert prometheus.scalar(f"sum(ixc_prompt_tokens_total{job})") == usage["prompt"], usage
        assert prometheus.scalar(f"sum(ixc_generation_tokens_total{job})") == usage["completion"], usage
        assert prometheus.scalar(f"sum(ixc_request_success_total{job})") == usage["requests"], usage
        for histogram in ("ixc_time_to_first_token_seconds", "ixc_e2e_request_latency_seconds",
                          "ixc_request_prompt_tokens", "ixc_request_queue_time_seconds"):
            assert prometheus.scalar(f"sum({histogram}_count{job})") == usage["requests"], histogram
        assert prometheus.scalar(f"sum(ixc_inter_token_latency_seconds_count{job})") == \
            usage["completion"] - usage["requests"]
        assert prometheus.scalar(f"sum(ixc_vision_images_total{job})") == 4  # 3 images and the video
        assert prometheus.scalar(f"sum(ixc_vision_video_frames_total{job})") == 3
        print(f"counters: {usage['requests']} requests, {usage['prompt']} prompt and {usage['completion']} "
              "generated tokens, equal to the responses' usage; histogram counts equal the requests")

        # A dropped stream (aborted) and a bad request (400).
        with httpx.stream("POST", server.url + "/v1/chat/completions", timeout=60,
                          json={"messages": [{"role": "user", "content": "A long tale"}], "max_tokens": 4000,
                                "stream": True, "ignore_eos": True}) as r:
            for n, _ in enumerate(r.iter_lines()):
                if n >= 4:
                    break
        bad = httpx.post(server.url + "/v1/chat/completions", json={"messages": []}, timeout=30)
        assert bad.status_code == 400, bad.text
        deadline = time.time() + 30
        while time.time() < deadline and server.metrics().get("ixc_num_aborted_requests_total", 0) < 1:
            time.sleep(0.2)
        prometheus.wait_for_scrape_after(time.time())
        assert prometheus.scalar(f"sum(ixc_num_aborted_requests_total{job})") == 1
        assert prometheus.scalar(f'sum(ixc_request_success_total{{job="ixc-cluster", finished_reason="abort"}})') == 1
        assert prometheus.scalar(
            f'sum(ixc_http_requests_total{{job="ixc-cluster", handler="/v1/chat/completions", status="400"}})') == 1
        print("the dropped stream counts as aborted, the bad request as a 400")

        # Every rank of T2S2V1 (ranks 1-5) has its series.
        for metric in ("ixc_rank_up", "ixc_rank_steps_total", "ixc_rank_compute_seconds_total",
                       "ixc_rank_heartbeat_age_seconds", "ixc_rank_device_memory_used_bytes"):
            ranks = sorted(int(s["metric"]["rank"]) for s in prometheus.query(f"{metric}{job}"))
            assert ranks == [1, 2, 3, 4, 5], (metric, ranks)
        llm = sorted((s["metric"]["tp"], s["metric"]["sp"]) for s in prometheus.query(f"ixc_rank_kv_blocks{job}"))
        assert llm == [("0", "0"), ("0", "1"), ("1", "0"), ("1", "1")], llm
        groups = {(s["metric"]["group"], s["metric"]["op"]) for s in prometheus.query(f"ixc_rank_comm_bytes_total{job}")}
        assert {("tp", "all_reduce"), ("world", "send"), ("world", "recv")} <= groups, groups
        print(f"per-rank series cover ranks 1-5; communication seen: {sorted(groups)}")

        # Every query of the dashboard, with its variables set as Grafana would.
        queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
        empty = []
        for expr in queries:
            concrete = (expr.replace("$job", "ixc-cluster").replace("$model", "model")
                        .replace("$__rate_interval", "1m"))
            if not prometheus.query(concrete):
                empty.append(concrete)
        assert not empty, "dashboard queries without series:\n" + "\n".join(empty)
        print(f"dashboard: all {len(queries)} queries run on Prometheus and return series")

        scrape = httpx.get(server.url + "/metrics", timeout=10).text
        lint = subprocess.run(["promtool", "check", "metrics"], input=scrape, capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout + lint.stderr
        print(f"promtool check metrics: a scrape of {len(scrape.splitlines())} lines passes")
    finally:
        if prometheus:
            prometheus.stop()
        assert server.stop() == 0, server.output()


if __name__ == "__main__":
    main()
