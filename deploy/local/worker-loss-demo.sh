#!/usr/bin/env bash
# Losing a worker, measured: a parameter-server node and 3 worker nodes on loopback train
# configs/fashion-mnist-mlp.json (Cluster:MinWorkers 2); with KILL=1 (the default) one worker gets
# kill -9 when the parameter server prints "epoch  3/10   50%". Logs and the run folder go to OUT
# (default runs/worker-loss); compare the final accuracy with KILL=0. docs/reliability.md has the figures.
# Usage: KILL=1 deploy/local/worker-loss-demo.sh [OUT]
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${1:-runs/worker-loss}"; kill_one="${KILL:-1}"
mkdir -p "$out"

bash deploy/local/apt-ensure.sh dataset-fashion-mnist libopenblas0-pthread libdnnl2
dotnet build src/DistTrain.Cli/DistTrain.Cli.csproj -c Release -nologo -v quiet
disttrain=(dotnet src/DistTrain.Cli/bin/Release/net10.0/disttrain.dll)

export DISTTRAIN_Cluster__Hostname=127.0.0.1 DISTTRAIN_Cluster__PublicHostname=127.0.0.1
export DISTTRAIN_Cluster__SeedNodes__0="akka.tcp://disttrain@127.0.0.1:4153" DISTTRAIN_Cluster__DataPort=4154
export DISTTRAIN_Cluster__MinWorkers=2 DISTTRAIN_Compute__BlasThreads=1 DISTTRAIN_Output__Directory="$out/runs"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
for i in 1 2 3; do
  DISTTRAIN_Cluster__Port=0 "${disttrain[@]}" node --role worker --config configs/fashion-mnist-mlp.json > "$out/worker-$i.log" 2>&1 &
  pids+=($!)
done
DISTTRAIN_Cluster__Port=4153 "${disttrain[@]}" node --role parameter-server --config configs/fashion-mnist-mlp.json > "$out/parameter-server.log" 2>&1 &
ps=$!
if [ "$kill_one" = 1 ]; then
  until grep -q "epoch  3/10   50%" "$out/parameter-server.log" 2>/dev/null; do sleep 0.05; done
  kill -9 "${pids[1]}"
  echo "killed worker process ${pids[1]} at $(date -u +%H:%M:%S.%N)"
fi
wait "$ps"; status=$?
grep -E "is lost|go to|Test accuracy" "$out/parameter-server.log"
trap - EXIT
exit "$status"
