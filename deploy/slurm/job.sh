# Sourced by deploy/slurm/serve.sh and offline.sh: submits the script that sources it as a Slurm batch job sized for
# the layout, and, inside the allocation, starts the cluster on it.
#   Outside an allocation: sbatch with 1 + V + T x S tasks over --nodes, --ntasks-per-node = ceil(tasks / nodes)
#     (ranks fill the nodes in order: keep each node's LLM ranks a multiple of T so TP groups stay inside a node;
#     the coordinator warns when one does not) and, with --gpus-per-node, that many GPUs per node (each LLM rank
#     takes its own by its rank on the node).
#   Inside: srun --mpi=pmix where this Slurm has PMIx, else deploy/launch.sh (Open MPI's mpirun on the allocation);
#     every task runs deploy/one_program.sh (the coordinator on rank 0, a worker elsewhere). scancel drains the server: Slurm sends
#     SIGTERM to every task, the coordinator drains, the workers (which block it) stop when it tells them.
# Options: --vision V --tp T --sp S --nodes N [--gpus-per-node G] [--build DIR] [--sbatch "extra sbatch options"]
#          -- ixc-coordinator's arguments.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export IXC_REPO=$repo
tp=1 sp=1 vision=1 nodes=1 gpus_per_node="" build="$repo/build/cpu" sbatch_extra=""
args=("$@")
while [ $# -gt 0 ]; do
  case "$1" in
    --tp) tp=$2; shift 2 ;;
    --sp) sp=$2; shift 2 ;;
    --vision) vision=$2; shift 2 ;;
    --nodes) nodes=$2; shift 2 ;;
    --gpus-per-node) gpus_per_node=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --sbatch) sbatch_extra=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "$(basename "$0"): unknown option $1 (see deploy/slurm/job.sh)" >&2; exit 2 ;;
  esac
done
for n in "$tp" "$sp" "$vision" "$nodes"; do
  [[ "$n" =~ ^[0-9]+$ ]] || { echo "$(basename "$0"): --tp, --sp, --vision and --nodes take whole numbers" >&2; exit 2; }
done
tasks=$((1 + vision + tp * sp))
coordinator_args=("$@")

if [ -z "${SLURM_JOB_ID:-}" ]; then
  per_node=$(( (tasks + nodes - 1) / nodes ))
  options=(--job-name "ixc-$job_kind" --nodes "$nodes" --ntasks "$tasks" --ntasks-per-node "$per_node"
           --output "ixc-$job_kind-%j.log")
  [ -n "$gpus_per_node" ] && options+=(--gpus-per-node "$gpus_per_node")
  # shellcheck disable=SC2206  # the extra options are words on purpose
  [ -n "$sbatch_extra" ] && options+=($sbatch_extra)
  exec sbatch "${options[@]}" "$0" "${args[@]}"
fi

# Inside the allocation: start_cluster [more coordinator arguments] runs the job and does not return.
first_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
echo "ixc-$job_kind: job $SLURM_JOB_ID, $tasks ranks (V$vision T$tp S$sp) on $SLURM_JOB_NODELIST; the coordinator runs on $first_node"
start_cluster() {
  if ! srun --mpi=list 2>&1 | grep -qw pmix; then  # mpirun on the allocation, as on one machine
    exec "$repo/deploy/launch.sh" --tp "$tp" --sp "$sp" --vision "$vision" --build "$build" --one-program -- \
      "${coordinator_args[@]}" "$@"
  fi
  local per_node=$(( (tasks + SLURM_JOB_NUM_NODES - 1) / SLURM_JOB_NUM_NODES )) cpus
  cpus=$(nproc)
  if [ "$per_node" -gt "$cpus" ]; then
    export OMP_NUM_THREADS=1  # more ranks than cores on a node: they share
  else
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( cpus / per_node ))}
  fi
  export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
  local line=(srun --mpi=pmix --kill-on-bad-exit=1 --ntasks "$tasks" --distribution block
              bash "$repo/deploy/one_program.sh" "$build/worker/ixc-worker" "$build/coordinator/ixc-coordinator"
              --tp "$tp" --sp "$sp" --vision "$vision" "${coordinator_args[@]}" "$@")
  echo "${line[*]}"
  exec "${line[@]}"
}
