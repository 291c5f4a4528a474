"""Compares two runs of the same requests through the cluster (tests/gpu/run_cluster.sh): the CPU's and the GPU's.
Every request must succeed on both, and its prompt logits (dump_logits) agree within 3% of their range, as the GPU
tests hold the GPU's bf16 to the CPU's f32; the generated tokens are reported (near-ties may go either way). With
--logits, two .npy files of prompt logits alone (ixc-generate's --dump-logits).
    python3 compare_cluster_runs.py WORK results-cpu.jsonl results-gpu.jsonl
    python3 compare_cluster_runs.py --logits cpu.npy gpu.npy
"""
import json
import sys

import numpy as np


def load(path):
    with open(path) as f:
        return {r["id"]: r for r in map(json.loads, f)}


def relative_error(cpu_path, gpu_path):
    """max |gpu - cpu| over max |cpu|; infinite where the shapes differ."""
    a, b = np.load(cpu_path), np.load(gpu_path)
    if a.shape != b.shape:
        return a.shape[0], float("inf")
    return a.shape[0], float(np.abs(b - a).max() / max(float(np.abs(a).max()), 1e-6))


def main():
    if sys.argv[1] == "--logits":
        rows, error = relative_error(sys.argv[2], sys.argv[3])
        print(f"{rows} prompt rows, logits within {error:.4f} of their range")
        sys.exit(0 if error <= 0.03 else 1)
    work, cpu_path, gpu_path = sys.argv[1:4]
    cpu, gpu = load(cpu_path), load(gpu_path)
    failures = []
    for request_id, reference in cpu.items():
        result = gpu.get(request_id)
        if result is None or "error" in result or "error" in reference:
            failures.append(f"{request_id}: cpu {reference.get('error', 'ok')}, gpu "
                            f"{'missing' if result is None else result.get('error', 'ok')}")
            continue
        rows, error = relative_error(f"{work}/{request_id}.cpu.npy", f"{work}/{request_id}.gpu.npy")
        same = sum(x == y for x, y in zip(reference["ids"], result["ids"]))
        print(f"{request_id}: {rows} prompt rows, logits within {error:.4f} of their range; "
              f"{same} of {len(reference['ids'])} generated tokens equal")
        if not error <= 0.03:
            failures.append(f"{request_id}: logits differ by {error:.4f} of their range")
    for failure in failures:
        print("FAILED", failure)
    sys.exit(1 if failures or not cpu else 0)


if __name__ == "__main__":
    main()
