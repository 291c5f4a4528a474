#!/usr/bin/env bash
# Every rank of a cluster job runs this one program (deploy/launch.sh --one-program): rank 0 execs the coordinator's
# command line, the others the worker. For an mpirun that cannot take the MPMD line (Open MPI 5.0 with newer glibc,
# open-mpi/ompi#13303).
#   mpirun -np N bash deploy/one_program.sh WORKER COORDINATOR [COORDINATOR_ARGS...]
worker=$1
shift
if [ "${OMPI_COMM_WORLD_RANK:-$PMIX_RANK}" = 0 ]; then exec "$@"; fi
exec "$worker"
