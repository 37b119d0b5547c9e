#!/usr/bin/env bash
# What TLS costs the main job in cluster mode: deploy/local/cluster.sh with 2 worker nodes on
# configs/fashion-mnist-mlp.json, TLS on and off (DISTTRAIN_Cluster__Tls), alternating within each pair
# (on first in odd pairs, off first in even ones). Prints samples/s of every run (training samples over
# training seconds, from summary.json, evaluation excluded) and the ratio off/on per pair.
# Shared memory is off in both (Cluster:SharedMemory=false): on one host it would carry the tensors past TLS.
# Usage: deploy/local/tls-cost.sh [PAIRS] [OUT]   (default 3 pairs, OUT runs/tls-cost); EPOCHS=3,
# CONFIG=configs/fashion-mnist-mlp.json (CONFIG=configs/fashion-mnist-cnn.json EPOCHS=1 for the CNN).
# docs/benchmarks.md has the figures.
set -euo pipefail
cd "$(dirname "$0")/../.."
pairs="${1:-3}"; out="${2:-runs/tls-cost}"; epochs="${EPOCHS:-3}"; config="${CONFIG:-configs/fashion-mnist-mlp.json}"
bash deploy/local/apt-ensure.sh python3
dotnet build src/DistTrain.Cli/DistTrain.Cli.csproj -c Release -nologo -v quiet
export CLI_DLL=src/DistTrain.Cli/bin/Release/net10.0/disttrain.dll
mkdir -p "$out"

run() { # run PAIR TLS -> samples/s
  local dir="$out/pair-$1-tls-$2"
  rm -rf "$dir"
  DISTTRAIN_Cluster__SharedMemory=false DISTTRAIN_Cluster__Tls="$2" DISTTRAIN_Training__Epochs="$epochs" DISTTRAIN_Output__Directory="$dir" \
    bash deploy/local/cluster.sh 2 --config "$config" > "$dir.log" 2>&1
  python3 -c 'import json,sys,glob
s=json.load(open(glob.glob(sys.argv[1]+"/*/summary.json")[0]))
print(round(sum(e["TrainSamples"] for e in s["epochs"])/sum(e["TrainSeconds"] for e in s["epochs"])))' "$dir"
}

echo "pair  TLS on (samples/s)  TLS off (samples/s)  off/on"
for pair in $(seq 1 "$pairs"); do
  if [ $((pair % 2)) -eq 1 ]; then on=$(run "$pair" true); off=$(run "$pair" false)
  else off=$(run "$pair" false); on=$(run "$pair" true); fi
  printf "%-5s %-19s %-20s %.3f\n" "$pair" "$on" "$off" "$(python3 -c "print($off/$on)")"
done
