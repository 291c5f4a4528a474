#!/usr/bin/env bash
# Writes, prints and runs the mpirun line of an ixc-cluster job: one coordinator, V vision ranks, a T x S grid of
# LLM ranks. Everything after `--` goes to ixc-coordinator (the workers take their settings from it).
#   deploy/launch.sh --tp 2 --sp 2 --vision 1 [--hostfile hosts] [--build build/cpu] [--one-program] -- \
#       --model DIR --requests in.jsonl --results out.jsonl
# On one machine with fewer cores than ranks, ranks share cores: each gets OMP_NUM_THREADS=1 and passive waits.
# --one-program: every rank runs one program (deploy/one_program.sh: the coordinator on rank 0, the worker elsewhere)
# instead of an MPMD line (coordinator : workers), which Open MPI 5.0's mpirun crashes on with newer glibc
# (open-mpi/ompi#13303).
set -euo pipefail
tp=1 sp=1 vision=1 hostfile="" one_program=0 build="$(cd "$(dirname "$0")/.." && pwd)/build/cpu"
while [ $# -gt 0 ]; do
  case "$1" in
    --tp) tp=$2; shift 2 ;;
    --sp) sp=$2; shift 2 ;;
    --vision) vision=$2; shift 2 ;;
    --hostfile) hostfile=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --one-program) one_program=1; shift ;;
    --) shift; break ;;
    *) echo "launch.sh: unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
for n in "$tp" "$sp" "$vision"; do
  [[ "$n" =~ ^[0-9]+$ ]] || { echo "launch.sh: --tp, --sp and --vision take whole numbers" >&2; exit 2; }
done
workers=$((vision + tp * sp))
ranks=$((1 + workers))
# A rank that dies must not take the coordinator with it before it has named the rank and written the results.
options=(--allow-run-as-root --mca orte_abort_on_non_zero_status 0)
[ -n "$hostfile" ] && options+=(--hostfile "$hostfile")
cores=$(nproc)
if [ -z "$hostfile" ] && [ "$ranks" -gt "$cores" ]; then
  options+=(--oversubscribe --bind-to none)
  export OMP_NUM_THREADS=1
else
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( cores / ranks > 0 ? cores / ranks : 1 ))}
fi
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
coordinator=("$build/coordinator/ixc-coordinator" --tp "$tp" --sp "$sp" --vision "$vision" "$@")
line=(mpirun "${options[@]}" -x OMP_NUM_THREADS -x OMP_WAIT_POLICY)
# The NCCL settings that matter across machines (docs/deploy.md), where they are set.
for name in NCCL_SOCKET_IFNAME NCCL_IB_HCA NCCL_IB_DISABLE NCCL_P2P_LEVEL NCCL_DEBUG; do
  if [ -n "${!name:-}" ]; then line+=(-x "$name"); fi
done
if [ "$one_program" = 1 ]; then
  line+=(-np "$ranks" bash "$(cd "$(dirname "$0")" && pwd)/one_program.sh" "$build/worker/ixc-worker"
         "${coordinator[@]}")
else
  line+=(-np 1 "${coordinator[@]}" : -np "$workers" "$build/worker/ixc-worker")
fi
echo "${line[*]}"
exec "${line[@]}"
