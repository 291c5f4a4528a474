#!/usr/bin/env bash
# Runs an offline JSONL job in a Slurm allocation (deploy/slurm/job.sh has the options):
#   deploy/slurm/offline.sh --vision 1 --tp 2 --sp 1 --nodes 1 -- --model /models/M --requests in.jsonl \
#       --results out.jsonl
# It submits itself with sbatch; the job ends when every result is written (ixc-offline-JOBID.log).
job_kind=offline
# Inside the job, Slurm runs a copy of this script from its spool folder: IXC_REPO says where the tree is.
# shellcheck source=deploy/slurm/job.sh
source "${IXC_REPO:-$(cd "$(dirname "$0")/../.." && pwd)}/deploy/slurm/job.sh"
start_cluster
