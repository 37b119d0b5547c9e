#!/usr/bin/env bash
# Momentum and staleness on the main job: configs/fashion-mnist-mlp.json in single-node mode with WORKERS workers, once per
# row and repeat, and one line per run (tests/modes/staleness_row.py) with the test accuracy after every epoch, the final
# one, the mean of the last five, the last epoch's train loss, and the staleness of the applied gradients from the run's
# summary.json (mean and counts by versions behind). BoundedStaleness and Async are not
# deterministic (the weights a gradient is computed on depend on arrival order), so each row runs REPEATS times; a Sync row
# runs once (it gives the same figures every time). docs/architecture.md ("Training modes") describes the figures.
#
# Usage: tests/modes/staleness-momentum.sh [ROW...]
#   ROW = "LABEL Section:Key=Value ...", each setting given to the run as DISTTRAIN_Section__Key=Value, e.g.
#     "BS2-m0.5 Training:Mode=BoundedStaleness Training:StalenessBound=2 Optimizer:Momentum=0.5"
#   Default: Sync with momentum 0.9, 0.5 and 0.23; BoundedStaleness with bound 2 and momentum 0.9, 0.5 and 0.23; bound 2, momentum 0.9
#   and Training:StalenessAwareLearningRate; bound 1 with momentum 0.9.
# Environment: WORKERS (3), REPEATS (2), EPOCHS (10), CONFIG (configs/fashion-mnist-mlp.json), OUT
#   (runs/staleness-momentum/<UTC time>), CLI_DLL (a built disttrain.dll; otherwise the CLI is built first).
# Writes OUT/table.md and each run's folder under OUT; exits 1 when a row is not "LABEL KEY=VALUE...". A run that fails
# is a line of the table saying so, and the script goes on.
set -uo pipefail
cd "$(dirname "$0")/../.."
workers=${WORKERS:-3}
repeats=${REPEATS:-2}
epochs=${EPOCHS:-10}
config=${CONFIG:-configs/fashion-mnist-mlp.json}
out=${OUT:-runs/staleness-momentum/$(date -u +%Y%m%d-%H%M%S)}
rows=("$@")
bs="Training:Mode=BoundedStaleness"
[ ${#rows[@]} -gt 0 ] || rows=("Sync-m0.9 Training:Mode=Sync" "Sync-m0.5 Training:Mode=Sync Optimizer:Momentum=0.5"
  "Sync-m0.23 Training:Mode=Sync Optimizer:Momentum=0.23"
  "BS2-m0.9 $bs Training:StalenessBound=2" "BS2-m0.5 $bs Training:StalenessBound=2 Optimizer:Momentum=0.5"
  "BS2-m0.23 $bs Training:StalenessBound=2 Optimizer:Momentum=0.23"
  "BS2-m0.9-aware $bs Training:StalenessBound=2 Training:StalenessAwareLearningRate=true"
  "BS1-m0.9 $bs Training:StalenessBound=1")

if [ -z "${CLI_DLL:-}" ]; then
  dotnet build src/DistTrain.Cli/DistTrain.Cli.csproj -c Release -nologo -v quiet || exit 1
  CLI_DLL=src/DistTrain.Cli/bin/Release/net10.0/disttrain.dll
fi
mkdir -p "$out"
table="$out/table.md"
header="| row | run | test accuracy by epoch (%) | final | mean of the last 5 epochs | final train loss | staleness: mean; counts by versions behind |"
printf '%s\n|---|---|---|---|---|---|---|\n' "$header" > "$table"
for row in "${rows[@]}"; do
  read -r label settings <<< "$row"
  env_settings=()
  for setting in $settings; do
    case "$setting" in
      *:*=*) key=${setting%%=*}; env_settings+=("DISTTRAIN_${key//:/__}=${setting#*=}") ;;
      *) echo "staleness-momentum.sh: row '$row': '$setting' is not Section:Key=Value" >&2; exit 1 ;;
    esac
  done
  for run in $(seq 1 "$repeats"); do
    dir="$out/$label-$run"
    mkdir -p "$dir"
    echo "== $label, run $run: ${env_settings[*]}"
    if env "${env_settings[@]}" DISTTRAIN_Output__Directory="$dir" dotnet "$CLI_DLL" train -c "$config" --workers "$workers" \
        --epochs "$epochs" > "$dir/output.txt" 2>&1; then
      /usr/bin/python3 tests/modes/staleness_row.py "$dir" "$label" "$run" >> "$table"
    else
      echo "| $label | $run | failed: see $dir/output.txt | | |" >> "$table"
    fi
    if [[ "$row" == *Mode=Sync* ]]; then break; fi
  done
done
cat "$table"
