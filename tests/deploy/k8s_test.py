#!/usr/bin/env python3
"""The Kubernetes deployment (deploy/k8s): every overlay renders with kustomize (`kubectl kustomize`); the built-in
kinds, and the MPIJob's pod templates as PodTemplates, pass kubernetes-validate's strict schemas; the custom kinds
(MPIJob, ServiceMonitor) carry the fields we rely on; every flag the launcher passes exists in ixc-coordinator.

    python3 tests/deploy/k8s_test.py BUILD_DIR
"""
import os
import re
import subprocess
import sys

import kubernetes_validate
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
K8S = os.path.join(ROOT, "deploy", "k8s")
KUBERNETES = "1.30.0"  # the oldest Kubernetes we claim (kubernetes-validate bundles its schemas)


def render(folder):
    run = subprocess.run([os.environ.get("KUBECTL", "kubectl"), "kustomize", folder], capture_output=True, text=True)
    assert run.returncode == 0, f"kustomize {folder}: {run.stderr}"
    return [doc for doc in yaml.safe_load_all(run.stdout) if doc]


def validate(resource, where):
    try:
        kubernetes_validate.validate(resource, KUBERNETES, strict=True)
    except kubernetes_validate.ValidationError as e:
        raise AssertionError(f"{where}: {resource['kind']} {resource['metadata'].get('name')}: {e.message} "
                             f"at {list(e.path)}") from e


def one(resources, kind, name=None):
    found = [r for r in resources if r["kind"] == kind and (name is None or r["metadata"]["name"] == name)]
    assert len(found) == 1, (kind, name, [r["metadata"]["name"] for r in found])
    return found[0]


def check_mpijob(job, layout, where, coordinator_flags):
    assert job["apiVersion"] == "kubeflow.org/v2beta1", where
    spec = job["spec"]
    assert spec["slotsPerWorker"] == 1 and spec["runLauncherAsWorker"] is True, where  # rank 0 on the launcher
    assert spec["mpiImplementation"] == "OpenMPI", where
    assert spec["sshAuthMountPath"] == "/home/ixc/.ssh", where  # the image's user (deploy/container)
    launcher = spec["mpiReplicaSpecs"]["Launcher"]
    worker = spec["mpiReplicaSpecs"]["Worker"]
    assert launcher["replicas"] == 1, where
    for role, replica in (("launcher", launcher), ("worker", worker)):
        validate({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": f"ixc-{role}"},
                  "template": replica["template"]}, f"{where} {role}")
    tp, sp, vision = layout
    ranks = vision + tp * sp
    assert worker["replicas"] == ranks, (where, worker["replicas"], ranks)
    container = launcher["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["IXC_NP"] == str(ranks + 1), (where, env)
    assert env["IXC_LAYOUT"] == f"--tp {tp} --sp {sp} --vision {vision}", (where, env)
    assert any(e["name"] == "POD_IP" and e["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
               for e in container["env"]), where
    command = " ".join(container["args"])
    for piece in ('-np "$IXC_NP"', "--hostfile /etc/mpi/hostfile", "/opt/ixc/bin/entrypoint.sh --model", "--serve",
                  "--host 0.0.0.0", "--port 8000",
                  '--control-host "$POD_IP"', "$IXC_LAYOUT", "--device cuda"):
        assert piece in command, (where, piece, command)
    flags = set(re.findall(r"--([a-z][a-z-]*)", command.split("entrypoint.sh", 1)[1] + " " + env["IXC_LAYOUT"]))
    unknown = {f for f in flags if f.replace("-", "_") not in coordinator_flags}
    assert not unknown, f"{where}: ixc-coordinator has no flag {sorted(unknown)}"
    assert env["OMPI_MCA_plm_rsh_args"].startswith("-p 2222"), where  # the workers' sshd_config
    port = container["ports"][0]
    assert port == {"name": "http", "containerPort": 8000}, (where, port)
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}, (where, probe)
    gpu = worker["template"]["spec"]["containers"][0]["resources"]
    assert gpu["limits"]["nvidia.com/gpu"] == 1 and gpu["requests"]["nvidia.com/gpu"] == 1, (where, gpu)
    assert "nvidia.com/gpu" not in container.get("resources", {}).get("limits", {}), where  # the coordinator has none
    for replica in (launcher, worker):
        mounts = replica["template"]["spec"]["containers"][0]["volumeMounts"]
        assert {"name": "models", "mountPath": "/models", "readOnly": True} in mounts, where
    return launcher["template"]["spec"]["volumes"]


def check_services(resources, where):
    api = one(resources, "Service", "ixc-cluster-api")
    assert api["spec"]["selector"] == {"training.kubeflow.org/job-name": "ixc-cluster",
                                       "training.kubeflow.org/job-role": "launcher"}, where
    assert api["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "http"}], where
    ranks = one(resources, "Service", "ixc-cluster-ranks")
    assert ranks["spec"]["clusterIP"] == "None", where
    monitor = one(resources, "ServiceMonitor", "ixc-cluster")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1", where
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= api["metadata"]["labels"].items(), (where, selector)  # it finds the API Service
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["port"] == "http" and endpoint["path"] == "/metrics", (where, endpoint)


def main():
    build = os.path.abspath(sys.argv[1])
    help_text = subprocess.run([os.path.join(build, "coordinator", "ixc-coordinator"), "--help"], capture_output=True,
                               text=True, check=True).stdout
    coordinator_flags = set(re.findall(r"--([a-z_0-9]+) \(", help_text))
    assert "serve" in coordinator_flags and "control_host" in coordinator_flags, help_text[:500]
    folders = {"base": (1, 1, 1), "overlays/model-pvc": (1, 1, 1)}
    for name in sorted(os.listdir(os.path.join(K8S, "overlays"))):
        match = re.fullmatch(r"t(\d+)s(\d+)v(\d+)", name)
        if match:
            folders[f"overlays/{name}"] = tuple(int(x) for x in match.groups())
    assert len(folders) >= 4, folders
    for folder, layout in folders.items():
        resources = render(os.path.join(K8S, folder))
        for resource in resources:
            if not resource["apiVersion"].startswith(("kubeflow.org/", "monitoring.coreos.com/")):
                validate(resource, folder)
        volumes = check_mpijob(one(resources, "MPIJob", "ixc-cluster"), layout, folder, coordinator_flags)
        check_services(resources, folder)
        models = next(v for v in volumes if v["name"] == "models")
        if folder != "base":  # the model volume overlay and the layouts built on it
            assert models["persistentVolumeClaim"]["claimName"] == "ixc-models", (folder, models)
            one(resources, "PersistentVolumeClaim", "ixc-models")
        print(f"{folder}: T{layout[0]} S{layout[1]} V{layout[2]}, {len(resources)} resources valid")


if __name__ == "__main__":
    main()
