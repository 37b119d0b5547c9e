#!/usr/bin/env bash
# Cluster mode on one machine without docker: one parameter-server node and N worker nodes as local
# processes on loopback, with the environment variables deploy/docker-compose.yml sets (service names
# mapped to 127.0.0.1). Usage: deploy/local/cluster.sh [WORKERS] [disttrain node options...]
#   deploy/local/cluster.sh 2 --config configs/fashion-mnist-mlp.json
# Logs go to runs/cluster-logs/; results to runs/ as in single-node mode.
set -euo pipefail
cd "$(dirname "$0")/../.."
workers="${1:-2}"; shift || true
[ $# -gt 0 ] || set -- --config configs/fashion-mnist-mlp.json

bash deploy/local/apt-ensure.sh dataset-fashion-mnist libopenblas0-pthread libdnnl2
dotnet build src/DistTrain.Cli/DistTrain.Cli.csproj -c Release -nologo -v quiet
disttrain=(dotnet src/DistTrain.Cli/bin/Release/net10.0/disttrain.dll)

port="${DISTTRAIN_Cluster__Port:-4053}"
export DISTTRAIN_Cluster__Hostname=127.0.0.1
export DISTTRAIN_Cluster__PublicHostname=127.0.0.1
export DISTTRAIN_Cluster__SeedNodes__0="akka.tcp://disttrain@127.0.0.1:${port}"
export DISTTRAIN_Cluster__DataPort="${DISTTRAIN_Cluster__DataPort:-4054}"
export DISTTRAIN_Cluster__MinWorkers="$workers"
# The worker nodes share this machine's cores.
export DISTTRAIN_Compute__BlasThreads="${DISTTRAIN_Compute__BlasThreads:-$(( $(nproc) / workers > 0 ? $(nproc) / workers : 1 ))}"

logs=runs/cluster-logs
mkdir -p "$logs"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
for i in $(seq 1 "$workers"); do
  DISTTRAIN_Cluster__Port=0 "${disttrain[@]}" node --role worker "$@" > "$logs/worker-$i.log" 2>&1 &
  pids+=($!)
done
echo "Started $workers worker node(s); logs in $logs/. Parameter server:"
DISTTRAIN_Cluster__Port="$port" "${disttrain[@]}" node --role parameter-server "$@" 2>&1 | tee "$logs/parameter-server.log" | grep -v '^\[INFO\]'
status=${PIPESTATUS[0]}
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
trap - EXIT
exit "$status"
