#!/usr/bin/env bash
# Losing a worker, measured: a parameter-server node and 3 worker nodes on loopback train
# configs/fashion-mnist-mlp.json (Cluster:MinWorkers 2 unless set); with KILL=1 (the default) one worker gets
# kill -9 when the parameter server prints "epoch  3/10   50%". Logs and the run folder go to OUT
# (default runs/worker-loss); compare the final accuracy with KILL=0. docs/reliability.md has the figures.
# WORKERS (default 3) sets the worker nodes, KILL_AT the progress line that triggers the kill; DISTTRAIN_*
# variables override the config as usual (for example DISTTRAIN_Training__BatchSizePerWorker=16).
# The run has its own CA, node certificate, job secret and free ports (deploy/local/cluster-env.sh).
# Exit code: the parameter server's, or 3 when KILL=1 and no progress line matched KILL_AT (nothing was killed).
# Usage: KILL=1 [WORKERS=3] [KILL_AT='epoch  3/10   50%'] deploy/local/worker-loss-demo.sh [OUT]
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${1:-runs/worker-loss}"; kill_one="${KILL:-1}"; workers="${WORKERS:-3}"; kill_at="${KILL_AT:-epoch  3/10   50%}"
mkdir -p "$out"

bash deploy/local/apt-ensure.sh dataset-fashion-mnist libopenblas0-pthread libdnnl2 openssl
dotnet build src/DistTrain.Cli/DistTrain.Cli.csproj -c Release -nologo -v quiet
disttrain=(dotnet src/DistTrain.Cli/bin/Release/net10.0/disttrain.dll)

RUN="$out"
source deploy/local/cluster-env.sh  # this run's job, certificates (mutual TLS) and free ports
export DISTTRAIN_Cluster__MinWorkers="${DISTTRAIN_Cluster__MinWorkers:-2}" DISTTRAIN_Compute__BlasThreads=1 DISTTRAIN_Output__Directory="$out/runs"
ps_port=$DISTTRAIN_Cluster__Port
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
for i in $(seq 1 "$workers"); do
  DISTTRAIN_Cluster__Port=0 "${disttrain[@]}" node --role worker --config configs/fashion-mnist-mlp.json > "$out/worker-$i.log" 2>&1 &
  pids+=($!)
done
DISTTRAIN_Cluster__Port="$ps_port" "${disttrain[@]}" node --role parameter-server --config configs/fashion-mnist-mlp.json > "$out/parameter-server.log" 2>&1 &
ps=$!
killed=0
if [ "$kill_one" = 1 ]; then
  until grep -qF "$kill_at" "$out/parameter-server.log" 2>/dev/null; do
    kill -0 "$ps" 2>/dev/null || break
    sleep 0.05
  done
  if grep -qF "$kill_at" "$out/parameter-server.log" 2>/dev/null; then
    kill -9 "${pids[1]}" && killed=1
    echo "killed worker process ${pids[1]} at $(date -u +%H:%M:%S.%N)"
  fi
fi
wait "$ps"; status=$?
if [ "$kill_one" = 1 ] && [ "$killed" = 0 ]; then
  # The progress lines' percentages depend on the steps per epoch (local SGD prints 26%, 51%, 75%): say so, do not measure nothing.
  echo "error: no worker was killed: the parameter server never printed '$kill_at'. Its progress lines were:" >&2
  grep -E "^epoch " "$out/parameter-server.log" | head -8 >&2
  echo "Set KILL_AT to one of them (as printed) and run again." >&2
  trap - EXIT
  exit 3
fi
grep -E "is lost|go to|Test accuracy" "$out/parameter-server.log"
trap - EXIT
exit "$status"
