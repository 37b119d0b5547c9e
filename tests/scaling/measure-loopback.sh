#!/usr/bin/env bash
# Calibration runs for docs/scaling.md: the main job in cluster mode on loopback (deploy/local/cluster.sh) with 1, 2, 3
# and 4 worker processes, the worker counts alternating round by round (1 2 3 4, then 4 3 2 1, ...) so that every
# count is measured beside the others on a shared machine. Every worker computes with one OpenBLAS thread
# (Compute:BlasThreads 1), so compute per sample means the same thing at every count.
#
# One CSV line per run on standard output (and in OUT/loopback.csv):
#   round, workers, load1 before and after (/proc/loadavg), samples/s (mean of the epochs after the first, from
#   summary.json; the first includes the joins and the JIT), the data plane's bytes per step (the parameter server's
#   "Data plane:" line), and over the steps of those epochs the means, in ms, of steps.csv's round, compute (slowest
#   worker), update (averaging and optimizer step), messaging and waiting columns, then the compute column's
#   coefficient of variation (standard deviation / mean) and its median in ms.
#
# Usage: tests/scaling/measure-loopback.sh [WORKER COUNTS...]   (default 1 2 3 4)
#   ROUNDS (3), EPOCHS (2) per run, CONFIG (configs/fashion-mnist-mlp.json), OUT (runs/scaling) for the logs,
#   MAX_LOAD (3): before each run wait up to WAIT_SECONDS (120) for the 1-minute load average to fall to MAX_LOAD;
#   the run then goes ahead whatever the load, and the load is in its line.
set -euo pipefail
cd "$(dirname "$0")/../.."
# The model is of a network link: the worker processes' tensors go over loopback TCP, not shared memory.
export DISTTRAIN_Cluster__SharedMemory="${DISTTRAIN_Cluster__SharedMemory:-false}"
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(1 2 3 4)
rounds=${ROUNDS:-3}
epochs=${EPOCHS:-2}
config=${CONFIG:-configs/fashion-mnist-mlp.json}
out=${OUT:-runs/scaling}
max_load=${MAX_LOAD:-3}
wait_seconds=${WAIT_SECONDS:-120}
mkdir -p "$out"
dotnet build src/DistTrain.Cli/DistTrain.Cli.csproj -c Release -nologo -v quiet > "$out/build.log" 2>&1 \
  || { echo "build failed; see $out/build.log" >&2; exit 1; }
export CLI_DLL=src/DistTrain.Cli/bin/Release/net10.0/disttrain.dll

load1() { cut -d' ' -f1 /proc/loadavg; }
header="round,workers,load_before,load_after,samples_per_s,bytes_per_step,round_ms,compute_ms,update_ms,messaging_ms,waiting_ms,compute_cv,compute_median_ms"
echo "$header" | tee "$out/loopback.csv"
for round in $(seq 1 "$rounds"); do
  order=("${counts[@]}")
  if [ $((round % 2)) -eq 0 ]; then order=(); for ((i = ${#counts[@]} - 1; i >= 0; i--)); do order+=("${counts[i]}"); done; fi
  for workers in "${order[@]}"; do
    for ((s = 0; s < wait_seconds; s += 5)); do
      awk -v l="$(load1)" -v m="$max_load" 'BEGIN { exit !(l <= m) }' && break
      sleep 5
    done
    before=$(load1)
    log="$out/round$round-workers$workers.log"
    DISTTRAIN_Training__Epochs="$epochs" DISTTRAIN_Compute__BlasThreads=1 \
      deploy/local/cluster.sh "$workers" --config "$config" > "$log" 2>&1 \
      || { echo "round $round, $workers workers: cluster.sh failed; see $log" >&2; continue; }
    after=$(load1)
    ps_log="$(sed -n 's/.*logs in \(.*\)\/\.$/\1/p' "$log" | head -1)/parameter-server.log"
    run_dir=$(sed -n 's/^Final weights .*: \(.*\)\/model\.safetensors$/\1/p' "$ps_log" | head -1)
    bytes=$(grep -oE '[0-9,]+ bytes per step' "$ps_log" | head -1 | cut -d' ' -f1 | tr -d ,)
    figures=$(/usr/bin/python3 - "$run_dir" <<'PY'
import csv, json, statistics, sys
run = sys.argv[1]
epochs = json.load(open(f"{run}/summary.json"))["epochs"][1:]
rate = sum(e["TrainSamples"] for e in epochs) / sum(e["TrainSeconds"] for e in epochs)
rows = [r for r in csv.DictReader(open(f"{run}/steps.csv")) if int(r["epoch"]) > 1]
mean = lambda key: 1000 * statistics.fmean(float(r[key]) for r in rows)
compute = [1000 * float(r["compute_seconds"]) for r in rows]
cv = statistics.pstdev(compute) / statistics.fmean(compute)
print(f"{rate:.0f},", ",".join(f"{mean(k + '_seconds'):.3f}" for k in ("round", "compute", "update", "messaging", "waiting")),
      f",{cv:.3f},{statistics.median(compute):.3f}", sep="")
PY
)
    echo "$round,$workers,$before,$after,${figures%%,*},$bytes,${figures#*,}" | tee -a "$out/loopback.csv"
  done
done
