#!/usr/bin/env bash
# Trains DistTrain on the CSV data sets Debian's python3-sklearn ships (configs/sklearn-*.json: 25% stratified test
# split, per-feature standardization, MLP 100 ReLU units, Adam 0.001, batch 200, 200 epochs) with seeds 1, 2 and 3,
# and prints one markdown row per data set, to set beside tests/baselines/sklearn_mlp.py's.
#   bash tests/baselines/disttrain_csv.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/local/apt-ensure.sh python3-sklearn libopenblas0-pthread
dotnet build src/DistTrain.Cli -c Release -nologo -v quiet > /dev/null
output=$(mktemp -d)
trap 'rm -rf "$output"' EXIT
echo "| data set | train / test rows | DistTrain seeds 1, 2, 3 | mean |"
echo "|---|---|---|---|"
for name in iris wine breast-cancer digits; do
  scores=()
  for seed in 1 2 3; do
    log=$(dotnet src/DistTrain.Cli/bin/Release/net10.0/disttrain.dll train --config "configs/sklearn-$name.json" --seed "$seed" --output "$output")
    scores+=("$(grep -o 'Test accuracy after [0-9]* epochs: [0-9.]*%' <<< "$log" | grep -o '[0-9.]*%$')")
    rows=$(grep -o '[0-9,]* training / [0-9,]* test' <<< "$log" | sed 's/ training//; s/ test//')
  done
  mean=$(printf '%s\n' "${scores[@]}" | tr -d % | awk '{ s += $1 } END { printf "%.2f%%", s / NR }')
  echo "| ${name/-/ } | $rows | $(IFS=,; echo "${scores[*]}" | sed 's/,/, /g') | $mean |"
done
