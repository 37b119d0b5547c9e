#!/usr/bin/env bash
# Losing the parameter server, measured: two parameter-server nodes (the active one and a standby) and 2
# worker nodes on loopback train configs/fashion-mnist-mlp.json with checkpoints every 100 steps in a folder
# both parameter servers share. With KILL=1 (the default) the active parameter server gets kill -9 when it
# prints "epoch  3/10   50%"; the standby takes over from the newest checkpoint and the workers register
# with it again. Logs, checkpoints and the run folder go to OUT (default runs/failover); compare the final
# accuracy and weights with KILL=0. docs/reliability.md has the figures. The run has its own CA, node
# certificate, job secret and free ports (deploy/local/cluster-env.sh), so it can run beside another cluster.
# Usage: KILL=1 deploy/local/failover-demo.sh [OUT]
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${1:-runs/failover}"; kill_active="${KILL:-1}"
mkdir -p "$out"
rm -rf "$out/checkpoints"

bash deploy/local/apt-ensure.sh dataset-fashion-mnist libopenblas0-pthread libdnnl2 openssl
dotnet build src/DistTrain.Cli/DistTrain.Cli.csproj -c Release -nologo -v quiet
disttrain=(dotnet src/DistTrain.Cli/bin/Release/net10.0/disttrain.dll)
config=configs/fashion-mnist-mlp.json

RUN="$out"
source deploy/local/cluster-env.sh  # this run's job, certificates (mutual TLS) and free ports
export DISTTRAIN_Cluster__MinWorkers=2 DISTTRAIN_Compute__BlasThreads=1 DISTTRAIN_Output__Directory="$out/runs"
active_port=$DISTTRAIN_Cluster__Port active_data_port=$DISTTRAIN_Cluster__DataPort
standby_port=$(bash deploy/local/free-port.sh) standby_data_port=$(bash deploy/local/free-port.sh)
export DISTTRAIN_Cluster__SeedNodes__1="akka.tcp://disttrain@127.0.0.1:${standby_port}"
ps_settings=(DISTTRAIN_Checkpoint__Directory="$out/checkpoints" DISTTRAIN_Checkpoint__EverySteps=100)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
env "${ps_settings[@]}" DISTTRAIN_Cluster__Port="$active_port" DISTTRAIN_Cluster__DataPort="$active_data_port" \
  "${disttrain[@]}" node --role parameter-server --config "$config" > "$out/ps-active.log" 2>&1 &
active=$!; pids+=($active)
until grep -q "This node is the active parameter server" "$out/ps-active.log" 2>/dev/null; do
  kill -0 "$active" 2>/dev/null || { echo "the active parameter server exited:" >&2; tail -n 3 "$out/ps-active.log" >&2; exit 2; }
  sleep 0.1
done
env "${ps_settings[@]}" DISTTRAIN_Cluster__Port="$standby_port" DISTTRAIN_Cluster__DataPort="$standby_data_port" \
  "${disttrain[@]}" node --role parameter-server --config "$config" > "$out/ps-standby.log" 2>&1 &
standby=$!; pids+=($standby)
for i in 1 2; do
  DISTTRAIN_Cluster__Port=0 "${disttrain[@]}" node --role worker --config "$config" > "$out/worker-$i.log" 2>&1 &
  pids+=($!)
done
finisher=$active
if [ "$kill_active" = 1 ]; then
  until grep -q "epoch  3/10   50%" "$out/ps-active.log" 2>/dev/null; do sleep 0.05; done
  kill -9 "$active"
  echo "killed the active parameter server (process $active) at $(date -u +%H:%M:%S.%N)"
  grep -o "Checkpoint [^ ]*: version [0-9]*" "$out/ps-active.log" | tail -1
  finisher=$standby
fi
wait "$finisher"; status=$?
grep -hE "Marking node\(s\) as UNREACHABLE|SBR took decision|Taking over|Resuming from|Training starts|Test accuracy|Final weights" \
  "$out/ps-standby.log" "$out/ps-active.log" | cut -c1-240
trap - EXIT
wait
exit "$status"
