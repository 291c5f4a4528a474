#!/usr/bin/env python3
"""The Slurm scripts (deploy/slurm) on a real Slurm: Debian's slurmctld, slurmd and munged, started here as a one-node
cluster with a config written by this test (free ports, a temporary state folder, 8 CPUs declared so that 4 ranks
fit). Then, on a tiny checkpoint with 4 tasks (V1 T2 S1):
  * offline.sh: the job's results equal ixc-generate's greedy ids;
  * serve.sh: the job's API answers the official OpenAI client;
  * scancel drains it: a stream in flight finishes with all its tokens, the coordinator drains, and the job ends
    with exit code 0.
Slurm's daemons need root (they switch users and own the spool); without it the test says so and is skipped.

    python3 tests/deploy/slurm_test.py BUILD_DIR
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import openai

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "integration"))
from serving_test import ROOT, Context, free_port, wait_ready  # noqa: E402

SKIP = 77  # ctest's SKIP_RETURN_CODE for this test


class OneNodeSlurm:
    def __init__(self, work):
        self.work = work
        self.host = socket.gethostname()
        for folder in ("state", "spool", "munge"):
            os.makedirs(os.path.join(work, folder), exist_ok=True)
        key = os.path.join(work, "munge", "munge.key")
        with open(key, "wb") as f:
            f.write(os.urandom(1024))
        os.chmod(key, 0o400)
        self.socket = os.path.join(work, "munge", "munge.socket")
        self.conf = os.path.join(work, "slurm.conf")
        with open(self.conf, "w") as f:
            f.write(f"""ClusterName=ixc-test
SlurmctldHost={self.host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={self.socket}
CredType=cred/munge
StateSaveLocation={work}/state
SlurmdSpoolDir={work}/spool
SlurmctldPidFile={work}/slurmctld.pid
SlurmdPidFile={work}/slurmd.pid
SlurmctldLogFile={work}/slurmctld.log
SlurmdLogFile={work}/slurmd.log
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=60
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
NodeName={self.host} CPUs=8 RealMemory=4000 State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
""")
        self.env = dict(os.environ, SLURM_CONF=self.conf, OMP_NUM_THREADS="1")
        self.run(["munged", "--force", f"--key-file={key}", f"--socket={self.socket}",
                  f"--pid-file={work}/munge/munged.pid", f"--log-file={work}/munge/munged.log",
                  f"--seed-file={work}/munge/seed"])
        self.run(["slurmctld"])
        self.run(["slurmd"])
        deadline = time.time() + 60
        while time.time() < deadline:
            state = self.run(["sinfo", "-h", "-o", "%T"], check=False).stdout.strip()
            if state == "idle":
                return
            time.sleep(0.5)
        raise AssertionError(f"the node did not become idle ({state}):\n{self.log('slurmctld')}\n{self.log('slurmd')}")

    def run(self, args, check=True, cwd=None):
        done = subprocess.run(args, capture_output=True, text=True, env=self.env, cwd=cwd or self.work)
        assert not check or done.returncode == 0, f"{' '.join(args)}: {done.stdout}{done.stderr}"
        return done

    def log(self, name):
        path = os.path.join(self.work, f"{name}.log")
        return open(path).read()[-3000:] if os.path.exists(path) else ""

    def submit(self, script, *args):
        out = self.run([os.path.join(ROOT, "deploy", "slurm", script), *args]).stdout
        return int(out.split("Submitted batch job ")[1].split()[0])

    def job(self, job_id):
        out = self.run(["scontrol", "show", "job", str(job_id)], check=False).stdout
        return dict(item.split("=", 1) for item in out.split() if "=" in item)

    def wait_done(self, job_id, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            state = self.job(job_id).get("JobState", "")
            if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
                return self.job(job_id)
            time.sleep(0.5)
        raise AssertionError(f"job {job_id} did not end within {timeout} s: {self.job(job_id)}")

    def job_log(self, kind, job_id):
        with open(os.path.join(self.work, f"ixc-{kind}-{job_id}.log")) as f:
            return f.read()

    def stop(self):
        self.run(["scancel", "--user", "root"], check=False)
        for name in ("slurmd", "slurmctld", "munge/munged"):
            path = os.path.join(self.work, f"{name}.pid")
            if os.path.exists(path):
                subprocess.run(["kill", open(path).read().strip()], check=False)


def test_offline(slurm, ctx):
    requests = [{"id": "a", "prompt": "Describe the skyline of Dubai at night.", "chat": True},
                {"id": "b", "prompt": "The city at night", "chat": False}]
    path = os.path.join(slurm.work, "requests.jsonl")
    with open(path, "w") as f:
        for r in requests:
            f.write(json.dumps({**r, "max_new_tokens": 8, "ignore_eos": True}) + "\n")
    results = os.path.join(slurm.work, "results.jsonl")
    job_id = slurm.submit("offline.sh", "--vision", "1", "--tp", "2", "--sp", "1", "--nodes", "1",
                          "--build", ctx.build, "--", "--model", ctx.model, "--requests", path, "--results", results)
    job = slurm.wait_done(job_id, 300)
    log = slurm.job_log("offline", job_id)
    assert job["JobState"] == "COMPLETED" and job["ExitCode"] == "0:0", (job, log[-3000:])
    launcher = "srun --mpi=pmix" if "srun --mpi=pmix" in log else "mpirun"
    with open(results) as f:
        got = {r["id"]: r for r in map(json.loads, f)}
    for r in requests:
        expected = ctx.generate(r["prompt"], 8, chat=r["chat"])
        assert got[r["id"]]["ids"] == expected, (r, got[r["id"]], expected)
    print(f"offline.sh: job {job_id} ({launcher}, 4 tasks) completed; its results equal ixc-generate's")


def test_serve(slurm, ctx):
    port = free_port()
    job_id = slurm.submit("serve.sh", "--vision", "1", "--tp", "2", "--sp", "1", "--nodes", "1", "--build",
                          ctx.build, "--", "--model", ctx.model, "--port", str(port), "--drain-timeout-s", "60")
    url = f"http://127.0.0.1:{port}"
    wait_ready(url + "/health", 180, lambda: slurm.job(job_id).get("JobState") in ("PENDING", "RUNNING"),
               lambda: f"job {slurm.job(job_id)}:\n{slurm.job_log('serve', job_id)[-3000:]}")
    log = slurm.job_log("serve", job_id)
    assert f"the API will listen on http://{slurm.host}:{port}/v1" in log, log[-2000:]
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)
    answer = client.chat.completions.create(model="model", messages=[{"role": "user", "content": "Hello"}],
                                            max_tokens=6, temperature=0, extra_body={"ignore_eos": True})
    assert answer.usage.completion_tokens == 6, answer
    # scancel with a stream in flight: it still gets every token, and the job ends cleanly.
    stream = client.chat.completions.create(model="model", messages=[{"role": "user", "content": "A story"}],
                                            max_tokens=40, temperature=0, stream=True,
                                            extra_body={"ignore_eos": True})
    chunks = iter(stream)
    next(chunks)
    slurm.run(["scancel", str(job_id)])
    finish = None
    for chunk in chunks:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
    assert finish == "length", finish  # finished, not aborted
    job = slurm.wait_done(job_id, 120)
    log = slurm.job_log("serve", job_id)
    assert "SIGTERM: draining" in log and "drained; the workers stop" in log, log[-3000:]
    assert job["ExitCode"] == "0:0", (job, log[-3000:])
    print(f"serve.sh: job {job_id} answered the OpenAI client; scancel drained it (the stream in flight finished, "
          f"state {job['JobState']}, exit code {job['ExitCode']})")


def main():
    if os.geteuid() != 0:
        print("skipped: Slurm's daemons (slurmctld, slurmd) and munged run as root here, and this user is not root")
        sys.exit(SKIP)
    for program in ("slurmctld", "slurmd", "munged", "sbatch"):
        assert shutil.which(program), f"{program} is missing: bash deploy/install-deps.sh installs slurm-wlm"
    ctx = Context(os.path.abspath(sys.argv[1]))
    slurm = OneNodeSlurm(tempfile.mkdtemp(prefix="ixc-slurm-"))
    try:
        test_offline(slurm, ctx)
        test_serve(slurm, ctx)
    finally:
        slurm.stop()


if __name__ == "__main__":
    main()
