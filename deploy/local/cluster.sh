#!/usr/bin/env bash
# Cluster mode on one machine without docker: one parameter-server node and N worker nodes as local
# processes on loopback, with the environment variables deploy/docker-compose.yml sets (service names
# mapped to 127.0.0.1). Usage: deploy/local/cluster.sh [WORKERS] [disttrain node options...]
#   deploy/local/cluster.sh 2 --config configs/fashion-mnist-mlp.json
# Each run gets its own folder runs/cluster/<UTC time>-<pid>/ with its logs, its CA, node certificate and
# job secret (deploy/certs/make-certs.sh; mutual TLS is on unless DISTTRAIN_Cluster__Tls=false), and free
# ports, so two local clusters run side by side without meeting. Results go to runs/ as in single-node mode.
# If any node fails (a taken port, a refused worker), the script says which, stops the others and exits
# with that node's code.
# WORKER_WRAPPER: a command put before each worker node's, given the worker's number (1 to WORKERS) as its first
# argument and the node's command after it, which it must exec (tests/modes/in-cpu-group.sh puts each worker in a CPU
# group this way, before the node starts).
set -euo pipefail
cd "$(dirname "$0")/../.."
workers="${1:-2}"; shift || true
[ $# -gt 0 ] || set -- --config configs/fashion-mnist-mlp.json

bash deploy/local/apt-ensure.sh dataset-fashion-mnist libopenblas0-pthread libdnnl2 openssl
# CLI_DLL: a disttrain.dll already built (skips the build).
[ -n "${CLI_DLL:-}" ] || dotnet build src/DistTrain.Cli/DistTrain.Cli.csproj -c Release -nologo -v quiet
disttrain=(dotnet "${CLI_DLL:-src/DistTrain.Cli/bin/Release/net10.0/disttrain.dll}")

RUN="runs/cluster/$(date -u +%Y%m%d-%H%M%S)-$$"
source deploy/local/cluster-env.sh
export DISTTRAIN_Cluster__MinWorkers="$workers"
# The worker nodes share this machine's cores.
export DISTTRAIN_Compute__BlasThreads="${DISTTRAIN_Compute__BlasThreads:-$(( $(nproc) / workers > 0 ? $(nproc) / workers : 1 ))}"

logs="$RUN/logs"
declare -A names
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
echo "Job $DISTTRAIN_Cluster__JobName: parameter server on port $DISTTRAIN_Cluster__Port (data plane $DISTTRAIN_Cluster__DataPort), $workers worker node(s); logs in $logs/."
"${disttrain[@]}" node --role parameter-server "$@" > >(tee "$logs/parameter-server.log" | grep --line-buffered -v '^\[INFO\]') 2>&1 &
ps_pid=$!; pids+=("$ps_pid"); names[$ps_pid]=parameter-server
for i in $(seq 1 "$workers"); do
  wrapper=(); [ -z "${WORKER_WRAPPER:-}" ] || wrapper=("$WORKER_WRAPPER" "$i")
  DISTTRAIN_Cluster__Port=0 "${wrapper[@]}" "${disttrain[@]}" node --role worker "$@" > "$logs/worker-$i.log" 2>&1 &
  pids+=($!); names[$!]="worker-$i"
done
# The job ends when the parameter server does; a node that fails before that ends the run.
status=0
running=("${pids[@]}")
while true; do
  set +e; wait -n -p ended "${running[@]}"; code=$?; set -e
  rest=(); for pid in "${running[@]}"; do [ "$pid" = "$ended" ] || rest+=("$pid"); done; running=("${rest[@]}")
  if [ "$ended" = "$ps_pid" ]; then status=$code; break; fi
  if [ "$code" -ne 0 ]; then
    echo "${names[$ended]} exited with code $code; stopping the run. Its log ($logs/${names[$ended]}.log) ends with:" >&2
    tail -n 3 "$logs/${names[$ended]}.log" >&2
    status=$code; break
  fi
done
if [ "$status" -eq 0 ]; then
  for pid in "${running[@]}"; do wait "$pid" || status=1; done
fi
exit "$status"
