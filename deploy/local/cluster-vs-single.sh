#!/usr/bin/env bash
# Cluster mode against single-node mode on this machine, side by side: each round runs the same job once as
# `disttrain train --workers W` (one process) and once as deploy/local/cluster.sh W (one parameter-server process and
# W worker processes on loopback), the order swapped every round, and prints for each run the samples/s (training
# samples over training seconds, from summary.json, evaluation excluded), the median step time and the median
# messaging time per step (steps.csv, the first 100 steps left out), and cluster/single per round, by samples/s and by
# median step time (the second is less touched by the tails a shared machine adds). With BASELINE_DLL
# (the disttrain.dll of another build, for example the one before a change) that build's cluster mode runs in every
# round too, so a change is measured against its predecessor and against single-node mode in one sitting. With PINNED=1
# a cluster run with PIN_WORKERS=1 (each worker node on one core; deploy/local/cluster.sh) runs in every round as well.
# Usage: deploy/local/cluster-vs-single.sh [ROUNDS] [OUT]   (default 4 rounds, OUT runs/cluster-vs-single)
# EPOCHS=3, CONFIG=configs/fashion-mnist-mlp.json, WORKERS=2, TLS=false (Cluster:Tls of the cluster runs; shared
# memory stays on, the default). docs/benchmarks.md has the figures.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds="${1:-4}"; out="${2:-runs/cluster-vs-single}"
epochs="${EPOCHS:-3}"; config="${CONFIG:-configs/fashion-mnist-mlp.json}"; workers="${WORKERS:-2}"; tls="${TLS:-false}"
[ -z "${BASELINE_DLL:-}" ] || [ -f "$BASELINE_DLL" ] || { echo "BASELINE_DLL=$BASELINE_DLL: no such file; give the disttrain.dll of a build." >&2; exit 2; }
bash deploy/local/apt-ensure.sh python3 dataset-fashion-mnist libopenblas0-pthread libdnnl2
dotnet build src/DistTrain.Cli/DistTrain.Cli.csproj -c Release -nologo -v quiet
build=src/DistTrain.Cli/bin/Release/net10.0/disttrain.dll
mkdir -p "$out"

measure() { # measure DIR -> "samples/s median-step-ms median-messaging-ms"
  python3 - "$1" <<'EOF'
import csv, glob, json, statistics, sys
summary = glob.glob(sys.argv[1] + "/*/summary.json")[0]
epochs = json.load(open(summary))["epochs"]
steps = list(csv.DictReader(open(summary.replace("summary.json", "steps.csv"))))[100:]
median_ms = lambda key: 1000 * statistics.median(float(row[key]) for row in steps)
print(round(sum(e["TrainSamples"] for e in epochs) / sum(e["TrainSeconds"] for e in epochs)),
      "%.3f %.3f" % (median_ms("round_seconds"), median_ms("messaging_seconds")))
EOF
}

run() { # run ROUND KIND -> measurement; KIND is single, cluster or baseline
  local dir="$out/round-$1-$2"
  rm -rf "$dir"; mkdir -p "$dir"
  case $2 in
    single) DISTTRAIN_Training__Epochs="$epochs" DISTTRAIN_Output__Directory="$dir" \
              dotnet "$build" train -c "$config" --workers "$workers" > "$dir.log" 2>&1 ;;
    cluster|baseline|pinned)
      local dll="$build" pin=0; [ "$2" != baseline ] || dll="$BASELINE_DLL"; [ "$2" != pinned ] || pin=1
      PIN_WORKERS="$pin" CLI_DLL="$dll" DISTTRAIN_Cluster__Tls="$tls" DISTTRAIN_Training__Epochs="$epochs" DISTTRAIN_Output__Directory="$dir" \
        bash deploy/local/cluster.sh "$workers" --config "$config" > "$dir.log" 2>&1 ;;
  esac || { echo "round $1, $2: the run failed; its output is in $dir.log" >&2; exit 1; }
  measure "$dir"
}

kinds=(single cluster); [ -z "${BASELINE_DLL:-}" ] || kinds+=(baseline); [ "${PINNED:-0}" != 1 ] || kinds+=(pinned)
echo "round  run       samples/s  step ms  messaging ms  (cluster/single by samples/s, by median step)"
for round in $(seq 1 "$rounds"); do
  order=("${kinds[@]}"); [ $((round % 2)) -eq 1 ] || order=($(printf '%s\n' "${kinds[@]}" | tac))
  declare -A result=()
  for kind in "${order[@]}"; do result[$kind]=$(run "$round" "$kind"); done
  read -r single single_step _ <<< "${result[single]}"
  for kind in "${kinds[@]}"; do
    read -r rate step messaging <<< "${result[$kind]}"
    ratio=""; [ "$kind" = single ] || ratio=$(python3 -c "print('%.2fx  %.2fx' % ($rate / $single, $single_step / $step))")
    printf "%-6s %-9s %-10s %-8s %-13s %s\n" "$round" "$kind" "$rate" "$step" "$messaging" "$ratio"
  done
  unset result
done
