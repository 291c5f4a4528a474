"""What the serving benchmarks share: the demo model with max_position_embeddings 32768, the long document they send,
and a cluster job serving the API, started and stopped.

    model = demo_32k_model(build)
    with ServedJob(build, ["--tp", "1", "--sp", "1", "--vision", "0"], ["--model", model], log_path, env) as job:
        client = job.client()
"""
import os
import socket
import subprocess
import sys
import time

import httpx
import openai

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def demo_model(out, *extra):
    """The demo preset in bf16 with the real tokenizer (and `extra` make_tiny_checkpoint.py options), written to
    `out` once; returns `out`."""
    if not os.path.exists(os.path.join(out, "config.json")):
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_tiny_checkpoint.py"), "--preset", "demo",
                        "--dtype", "bf16", "--tokenizer", os.path.join(ROOT, "tests", "data", "tokenizer.model"),
                        *extra, "--out", out], check=True, stdout=subprocess.DEVNULL)
    return out


def demo_32k_model(build):
    """The demo preset with max_position_embeddings 32768 (IXC-2.5's InternLM2 ships 32768): past
    max_position_embeddings dynamic NTK rotates a prompt by its length, and no prefix of another length may be
    reused. Written under the build folder once."""
    return demo_model(os.path.join(build, "bench-models", "demo-32k"), "--max-position-embeddings", "32768")


def document(tokens):
    """About `tokens` tokens of varied text (each numbered sentence is about 16 tokens)."""
    return " ".join(f"Section {i}: the city grew along the river, and its {('spice', 'silk', 'salt', 'tea')[i % 4]} "
                    f"markets traded with ships from the harbour." for i in range(tokens // 22))


def unbound_env(ranks):
    """The environment for a job whose LLM ranks should share every core: unbound (mpirun binds each rank to a core
    where the ranks fit the cores) and with threads for the cores."""
    return dict(os.environ, OMP_NUM_THREADS=str(max(1, os.cpu_count() // ranks)),
                OMPI_MCA_hwloc_base_binding_policy="none")


class ServedJob:
    """deploy/launch.sh with `layout` (its options) serving the API, named "bench", with `flags` for the coordinator;
    ready (/health) when entered, terminated when left. A job that exits first ends the benchmark, naming its log."""

    def __init__(self, build, layout, flags, log_path, env=None):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log = open(log_path, "w")
        self.job = subprocess.Popen([os.path.join(ROOT, "deploy", "launch.sh"), *layout, "--build", build, "--",
                                     "--serve", "--port", str(self.port), "--served-model-name", "bench", *flags],
                                    stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def __enter__(self):
        while True:
            if self.job.poll() is not None:
                sys.exit(f"the server exited {self.job.returncode}; see {self.log.name}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)

    def __exit__(self, *exc):
        self.job.terminate()
        self.job.wait(300)
        self.log.close()

    def client(self):
        return openai.OpenAI(base_url=f"http://127.0.0.1:{self.port}/v1", api_key="none", max_retries=0,
                             timeout=3600)
