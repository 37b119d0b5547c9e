#!/bin/sh
# Containers reach each other by IP: when no public host name is given, advertise this container's
# address to the cluster (Akka.Remote needs an address the other nodes can connect to).
set -e
if [ -z "${DISTTRAIN_Cluster__PublicHostname:-}" ]; then
  DISTTRAIN_Cluster__PublicHostname="$(hostname -i | cut -d' ' -f1)"
  export DISTTRAIN_Cluster__PublicHostname
fi
exec dotnet /app/disttrain.dll "$@"
