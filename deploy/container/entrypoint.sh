#!/usr/bin/env bash
# The image's entrypoint. Started by an outside mpirun (a rank variable is set): rank 0 runs the coordinator with the
# arguments, every other rank a worker, as deploy/one_program.sh does. Started alone (docker run): runs the whole
# job on this machine through deploy/launch.sh, whose arguments it takes:
#   entrypoint.sh --tp 1 --sp 1 --vision 1 -- --model /models/M --device cuda --serve --host 0.0.0.0
set -euo pipefail
home=${IXC_HOME:-/opt/ixc}  # where the image keeps bin/ and build/
bin=$home/bin build=$home/build
if [ -n "${OMPI_COMM_WORLD_RANK:-${PMIX_RANK:-}}" ]; then
  exec "$bin/one_program.sh" "$build/worker/ixc-worker" "$build/coordinator/ixc-coordinator" "$@"
fi
exec "$bin/launch.sh" --build "$build" --one-program "$@"
