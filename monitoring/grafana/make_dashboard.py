#!/usr/bin/env python3
"""Writes dashboards/ixc-cluster.json, the Grafana dashboard of an ixc-cluster job: edit the panels here, run it, and
commit both (tests/integration/monitoring_test.py checks that they agree and runs every query on a real Prometheus).

    python3 monitoring/grafana/make_dashboard.py
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
S = '{job=~"$job", model_name=~"$model"}'  # every query's selector: the dashboard is templated on job and model
RATE = "[$__rate_interval]"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def rate(metric, by=None):
    inner = f"rate({metric}{S}{RATE})"
    return f"sum by ({by}) ({inner})" if by else f"sum({inner})"


def quantiles(histogram, qs=(0.5, 0.9, 0.99)):
    return [(f"histogram_quantile({q}, sum by (le) (rate({histogram}_bucket{S}{RATE})))", f"p{int(q * 100)}")
            for q in qs]


def per_rank(numerator, denominator):
    by = "rank, role, tp, sp"
    return f"{rate(numerator, by)} / {rate(denominator, by)}"


# (row, [(title, unit, [(expr, legend)], description)])
ROWS = [
    ("Overview", [
        ("Requests finished / s", "reqps", [(rate("ixc_request_success_total", "finished_reason"),
                                              "{{finished_reason}}")],
         "Requests that ended, by finish reason (stop, length, abort)."),
        ("Tokens / s", "short", [(rate("ixc_prompt_tokens_total"), "prompt"),
                                 (rate("ixc_generation_tokens_total"), "generation")],
         "Prompt positions prefilled (image rows included) and tokens generated."),
        ("Requests running and waiting", "short", [(f"sum(ixc_num_requests_running{S})", "running"),
                                                   (f"sum(ixc_num_requests_waiting{S})", "waiting"),
                                                   (f"sum(ixc_num_requests_waiting_for_image_cache{S})",
                                                    "waiting for the image cache")],
         "The running batch and the queue."),
        ("KV cache usage", "percentunit", [(f"max(ixc_kv_cache_usage_perc{S})", "fullest SP rank")],
         "The fullest SP rank's KV pool: the one that decides admission and preemption."),
        ("Prefix and image cache hit rate", "percentunit",
         [(f"{rate('ixc_prefix_cache_hits_total')} / {rate('ixc_prefix_cache_queries_total')}", "prompt positions"),
          (f"{rate('ixc_image_cache_hits_total')} / {rate('ixc_image_cache_queries_total')}", "images")],
         "Prompt positions whose K/V the prefix cache held, and images whose embeddings the image cache held."),
    ]),
    ("Latency", [
        ("Time to first token", "s", quantiles("ixc_time_to_first_token_seconds"),
         "From the HTTP arrival (preparation included) to the first token."),
        ("Inter-token latency", "s", quantiles("ixc_inter_token_latency_seconds"), "Between consecutive tokens."),
        ("End-to-end latency", "s", quantiles("ixc_e2e_request_latency_seconds"), "From arrival to the last token."),
        ("Queue, prefill and decode (p90)", "s",
         [(quantiles(h, (0.9,))[0][0], name) for h, name in (("ixc_request_queue_time_seconds", "queue"),
                                                              ("ixc_request_prefill_time_seconds", "prefill"),
                                                              ("ixc_request_decode_time_seconds", "decode"))],
         "Where a request's time goes."),
    ]),
    ("Vision stage", [
        ("Images and video frames / s", "short", [(rate("ixc_vision_images_total"), "images (a video is one)"),
                                                  (rate("ixc_vision_video_frames_total"), "video frames")],
         "Media received."),
        ("Tiles per image (mean)", "short",
         [(f"{rate('ixc_vision_tiles_per_image_sum')} / {rate('ixc_vision_tiles_per_image_count')}", "tiles")],
         "ViT crops per image: the HD grid and the global view."),
        ("Preprocessing and ViT pass", "s",
         quantiles("ixc_vision_preprocess_seconds", (0.5, 0.99))
         + [(e, "ViT " + l) for e, l in quantiles("ixc_vision_vit_pass_seconds", (0.5, 0.99))],
         "Decoding and the HD transform on the coordinator; one ViT pass on a vision rank."),
        ("ViT crops / s", "short",
         [(rate("ixc_vision_vit_crops_total"), "crops / s"),
          (f"{rate('ixc_vision_vit_crops_total')} / {rate('ixc_vision_vit_pass_seconds_sum')}",
           "crops per second of ViT time")],
         "The vision ranks' throughput."),
        ("Image queue wait", "s",
         quantiles("ixc_vision_image_queue_seconds", (0.99,)), "Waiting for room in the image cache (p99)."),
        ("Image cache", "bytes", [(f"sum(ixc_image_cache_bytes{S})", "held"),
                                  (f"sum(ixc_image_cache_bytes_in_use{S})", "in use")],
         "What the vision ranks hold: features until assembly, embeddings while requests use them and, cached, "
         "until evicted for room."),
        ("Vision handoff", "Bps", [(rate("ixc_vision_handoff_bytes_total", "path"), "{{path}}")],
         "Bytes the vision ranks send (features to an image's owner, embeddings to the LLM ranks), by path."),
    ]),
    ("Parallel ranks", [
        ("Step time per rank", "s", [(per_rank("ixc_rank_compute_seconds_total", "ixc_rank_steps_total"),
                                      "rank {{rank}} {{role}} tp {{tp}} sp {{sp}}")],
         "Mean seconds of a step's work on each rank, communication included."),
        ("Communication share per rank", "percentunit",
         [(per_rank("ixc_rank_comm_seconds_total", "ixc_rank_compute_seconds_total"), "rank {{rank}} {{role}}")],
         "The part of each rank's step time spent in data-plane calls."),
        ("Communication by group and op", "Bps", [(rate("ixc_rank_comm_bytes_total", "group, op, path"),
                                                   "{{group}} {{op}} ({{path}})")],
         "tp all_reduce: tensor parallelism; sp send_recv: the ring prefill; sp all_gather: the decode's "
         "gather-merge; world send/recv: the vision handoff."),
        ("Engine step", "s", quantiles("ixc_step_duration_seconds"), "One engine step, plan to every rank's result."),
        ("KV blocks in use per rank", "short", [(f"ixc_rank_kv_blocks_used{S}", "rank {{rank}} sp {{sp}}"),
                                                (f"max(ixc_rank_kv_blocks{S})", "pool")],
         "Each LLM rank's pool, as the coordinator schedules it."),
        ("Device memory per rank", "bytes", [(f"ixc_rank_device_memory_used_bytes{S}", "rank {{rank}} {{role}}"),
                                             (f"max(ixc_rank_device_memory_total_bytes{S})", "total")],
         "A GPU's memory in use, or on the CPU the rank's resident memory."),
        ("Rank heartbeats", "s", [(f"ixc_rank_heartbeat_age_seconds{S}", "rank {{rank}} {{role}}"),
                                  (f"sum(1 - ixc_rank_up{S})", "ranks down")],
         "Seconds since each rank's last heartbeat (one a second); ranks down."),
    ]),
    ("Errors and preemptions", [
        ("Errors and aborts / s", "reqps", [(rate("ixc_request_error_total"), "errors"),
                                            (rate("ixc_num_aborted_requests_total"), "aborted")],
         "Requests ended by an error; requests aborted (client gone, drain timeout)."),
        ("Preemptions / s", "short", [(rate("ixc_num_preemptions_total"), "preemptions")],
         "Sequences preempted for KV blocks (recomputed later)."),
        ("HTTP responses / s", "reqps", [(rate("ixc_http_requests_total", "status"), "{{status}}")],
         "Every HTTP answer by status code."),
    ]),
]


def dashboard():
    panels, y, next_id = [], 0, 1
    for row, row_panels in ROWS:
        panels.append({"type": "row", "title": row, "id": next_id, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        next_id += 1
        y += 1
        for i, (title, unit, queries, description) in enumerate(row_panels):
            panels.append({
                "type": "timeseries", "title": title, "id": next_id, "description": description,
                "datasource": DATASOURCE,
                "gridPos": {"h": 8, "w": 8, "x": 8 * (i % 3), "y": y + 8 * (i // 3)},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
                "targets": [{"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": chr(65 + k)}
                            for k, (expr, legend) in enumerate(queries)],
            })
            next_id += 1
        y += 8 * ((len(row_panels) + 2) // 3)
    variable = lambda name, label, query: {  # noqa: E731
        "name": name, "label": label, "type": "query", "datasource": DATASOURCE, "query": query,
        "definition": query, "refresh": 2, "includeAll": True, "multi": True, "current": {}, "sort": 1}
    return {
        "title": "ixc-cluster", "uid": "ixc-cluster", "tags": ["ixc-cluster", "internlm-xcomposer"],
        "description": "IXC-2.5 served by ixc-cluster: requests, latency, the vision stage and every rank.",
        "schemaVersion": 38, "version": 1, "editable": True, "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus", "current": {}},
            variable("job", "job", "label_values(ixc_build_info, job)"),
            variable("model", "model", 'label_values(ixc_build_info{job=~"$job"}, model_name)'),
        ]},
        "panels": panels,
    }


def main():
    path = os.path.join(HERE, "dashboards", "ixc-cluster.json")
    with open(path, "w") as f:
        json.dump(dashboard(), f, indent=2)
        f.write("\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
