#!/usr/bin/env python3
"""The container and the compose stack (deploy/container, deploy/compose), as far as a machine without a registry or
a Docker daemon can check them: hadolint on the Dockerfile; its build steps are install-deps.sh and the `cuda`
preset, and what it copies is where the build puts it; the entrypoint picks the coordinator on rank 0, a worker
elsewhere, and launch.sh when no mpirun started it; the workers' sshd port is the one the MPIJob's mpirun uses;
`docker-compose config` accepts the stack, promtool its Prometheus config, and every flag it passes exists.

    python3 tests/deploy/container_test.py BUILD_DIR
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONTAINER = os.path.join(ROOT, "deploy", "container")
COMPOSE = os.path.join(ROOT, "deploy", "compose")
COMPOSE_SCHEMA = "/usr/lib/python3/dist-packages/compose/config/compose_spec.json"  # Debian's docker-compose


def run(args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, **kwargs)


def check_dockerfile(build):
    lint = run(["hadolint", os.path.join(CONTAINER, "Dockerfile")])
    assert lint.returncode == 0, lint.stdout + lint.stderr
    with open(os.path.join(CONTAINER, "Dockerfile")) as f:
        dockerfile = f.read()
    assert dockerfile.count("install-deps.sh") >= 2, "both stages install with deploy/install-deps.sh"
    assert "cmake --preset cuda" in dockerfile and "cmake --build --preset cuda" in dockerfile
    assert re.search(r"^FROM nvidia/cuda:13\.\S+-devel", dockerfile, re.M), "the build stage is NVIDIA's CUDA 13"
    assert re.search(r"^USER 1000$", dockerfile, re.M) and "HEALTHCHECK" in dockerfile and "/health" in dockerfile
    # What it copies from the build is where a build puts it (the cpu preset has the same layout).
    for path in re.findall(r"/src/build/cuda/(\S+)", dockerfile):
        assert os.path.exists(os.path.join(build, path)), f"the Dockerfile copies {path}, which a build has not"
    for path in re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, re.M):
        for source in path.split():
            assert os.path.exists(os.path.join(ROOT, source)), f"the Dockerfile copies {source}, which is missing"
    print("Dockerfile: hadolint passes; install-deps.sh and the cuda preset; what it copies exists")


def check_entrypoint():
    home = tempfile.mkdtemp(prefix="ixc-image-")
    for name in ("build/coordinator/ixc-coordinator", "build/worker/ixc-worker"):
        os.makedirs(os.path.dirname(os.path.join(home, name)), exist_ok=True)
    os.makedirs(os.path.join(home, "bin"))
    fakes = {"build/coordinator/ixc-coordinator": "coordinator", "build/worker/ixc-worker": "worker",
             "bin/launch.sh": "launch"}
    for name, label in fakes.items():
        with open(os.path.join(home, name), "w") as f:
            f.write(f'#!/usr/bin/env bash\necho {label} "$@"\n')
        os.chmod(os.path.join(home, name), 0o755)
    shutil.copy(os.path.join(ROOT, "deploy", "one_program.sh"), os.path.join(home, "bin"))
    entrypoint = os.path.join(CONTAINER, "entrypoint.sh")
    base = {k: v for k, v in os.environ.items() if k not in ("OMPI_COMM_WORLD_RANK", "PMIX_RANK")}

    def start(**env):
        out = run([entrypoint, "--model", "/models/m", "--serve"], env=dict(base, IXC_HOME=home, **env))
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    assert start(OMPI_COMM_WORLD_RANK="0") == "coordinator --model /models/m --serve"
    assert start(OMPI_COMM_WORLD_RANK="3") == "worker"
    assert start(PMIX_RANK="0") == "coordinator --model /models/m --serve"
    assert start() == f"launch --build {home}/build --one-program --model /models/m --serve"
    print("entrypoint: the coordinator on rank 0, a worker elsewhere, launch.sh when alone")


def check_ssh():
    with open(os.path.join(CONTAINER, "sshd_config")) as f:
        port = re.search(r"^Port (\d+)$", f.read(), re.M).group(1)
    with open(os.path.join(ROOT, "deploy", "k8s", "base", "mpijob.yaml")) as f:
        job = yaml.safe_load(f)
    worker = job["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]
    assert worker["command"][-1] == "/opt/ixc/sshd_config", worker["command"]
    launcher = job["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]
    rsh = next(e["value"] for e in launcher["env"] if e["name"] == "OMPI_MCA_plm_rsh_args")
    assert rsh.startswith(f"-p {port} "), (rsh, port)
    print(f"ssh: the workers' sshd listens on {port}, where the launcher's mpirun connects")


def check_compose(build):
    compose = os.path.join(COMPOSE, "docker-compose.yml")
    config = run(["docker-compose", "-f", compose, "config"])
    if config.returncode != 0 and "Traceback" in config.stderr:
        # The tool itself did not start (Debian's docker-compose on a python3 whose packages pip replaced): check the
        # file against the compose schema the tool ships instead, and say so.
        import jsonschema
        with open(COMPOSE_SCHEMA) as f:
            schema = json.load(f)
        with open(compose) as f:
            stack = yaml.safe_load(f)
        jsonschema.validate(stack, schema)
        print(f"compose: docker-compose did not start ({config.stderr.strip().splitlines()[-1]}); the file passes "
              f"its schema ({COMPOSE_SCHEMA})")
    else:
        assert config.returncode == 0, config.stderr
        stack = yaml.safe_load(config.stdout)
    assert set(stack["services"]) == {"ixc", "prometheus", "grafana"}, stack["services"].keys()
    for service in stack["services"].values():
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            if source.startswith(ROOT) and not source.endswith("/models"):  # the models are the user's
                assert os.path.exists(source), f"compose mounts {source}, which is missing"
    # Its Prometheus config with the shipped rules beside it, as the container sees them.
    folder = tempfile.mkdtemp(prefix="ixc-compose-")
    shutil.copy(os.path.join(COMPOSE, "prometheus.yml"), folder)
    shutil.copy(os.path.join(ROOT, "monitoring", "prometheus", "alerts.yml"), folder)
    check = run(["promtool", "check", "config", os.path.join(folder, "prometheus.yml")])
    assert check.returncode == 0, check.stdout + check.stderr
    # Every flag of the serving node: launch.sh's before `--`, ixc-coordinator's after.
    command = stack["services"]["ixc"]["command"]
    command = " ".join(command) if isinstance(command, list) else command
    launch, coordinator = command.split(" -- ", 1)
    help_text = run([os.path.join(build, "coordinator", "ixc-coordinator"), "--help"]).stdout
    known = set(re.findall(r"--([a-z_0-9]+) \(", help_text))
    unknown = {f for f in re.findall(r"--([a-z][a-z-]*)", coordinator) if f.replace("-", "_") not in known}
    assert not unknown, f"compose passes ixc-coordinator flags it does not have: {unknown}"
    assert set(re.findall(r"--([a-z][a-z-]*)", launch)) <= {"tp", "sp", "vision"}, launch
    print("compose: docker-compose config and promtool accept the stack; its flags exist")


def main():
    build = os.path.abspath(sys.argv[1])
    check_dockerfile(build)
    check_entrypoint()
    check_ssh()
    check_compose(build)


if __name__ == "__main__":
    main()
