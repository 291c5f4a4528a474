#!/usr/bin/env bash
# Serves the OpenAI API from a Slurm allocation (deploy/slurm/job.sh has the options):
#   deploy/slurm/serve.sh --vision 1 --tp 2 --sp 1 --nodes 1 [--gpus-per-node 8] -- --model /models/M \
#       [--device cuda] [--port 8000]
# It submits itself with sbatch; the job's log (ixc-serve-JOBID.log) says where the API listens. scancel JOBID
# drains the server (in-flight requests finish within --drain-timeout-s) and the job ends.
job_kind=serve
# Inside the job, Slurm runs a copy of this script from its spool folder: IXC_REPO says where the tree is.
# shellcheck source=deploy/slurm/job.sh
source "${IXC_REPO:-$(cd "$(dirname "$0")/../.." && pwd)}/deploy/slurm/job.sh"
port=8000
for ((i = 0; i < ${#coordinator_args[@]}; i++)); do
  [ "${coordinator_args[$i]}" = --port ] && port=${coordinator_args[$((i + 1))]}
done
echo "ixc-serve: the API will listen on http://$first_node:$port/v1 (pass --host 0.0.0.0 to reach it from other machines)"
start_cluster --serve
