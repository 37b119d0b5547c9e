#!/bin/sh
# The image's entrypoint: sets what a container knows better than the configuration, then runs disttrain.
set -e
# Containers reach each other by IP: when no public host name is given, advertise this container's
# address to the cluster (Akka.Remote needs an address the other nodes can connect to).
if [ -z "${DISTTRAIN_Cluster__PublicHostname:-}" ]; then
  DISTTRAIN_Cluster__PublicHostname="$(hostname -i | cut -d' ' -f1)"
  export DISTTRAIN_Cluster__PublicHostname
fi
# Worker containers on one machine share its cores, as deploy/local/cluster.sh's processes do: with
# WORKERS_PER_MACHINE set (docker-compose.yml sets it to WORKERS) and no Compute:BlasThreads given, each
# runs cores / workers BLAS threads per product, at least 1, instead of every core each.
if [ -n "${WORKERS_PER_MACHINE:-}" ] && [ -z "${DISTTRAIN_Compute__BlasThreads:-}" ]; then
  case "$WORKERS_PER_MACHINE" in
    *[!0-9]*|0*)
      echo "WORKERS_PER_MACHINE=$WORKERS_PER_MACHINE: expected the number of worker containers on this machine (1 or more)." >&2
      exit 2 ;;
  esac
  threads=$(( $(nproc) / WORKERS_PER_MACHINE ))
  [ "$threads" -ge 1 ] || threads=1
  DISTTRAIN_Compute__BlasThreads=$threads
  export DISTTRAIN_Compute__BlasThreads
fi
# The app is published self-contained: the executable carries its own .NET runtime.
exec /app/disttrain "$@"
