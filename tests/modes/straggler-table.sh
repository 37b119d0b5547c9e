#!/usr/bin/env bash
# Training modes with and without a straggler: for each row (a label and its settings), the main job in cluster mode on
# loopback (deploy/local/cluster.sh: 1 parameter-server process and 3 worker processes, configs/fashion-mnist-mlp.json),
# once with equal workers and once with one worker at half their speed. Every worker process runs in its own CPU group
# (cgroup v1 cpu.cfs_quota_us, or cgroup v2 cpu.max) joined before it starts (tests/modes/in-cpu-group.sh): equal = each
# worker QUOTA percent of one core, straggler = worker STRAGGLER at half of that. The parameter server has no quota.
# Every node has Compute:BlasThreads 1. Writes OUT/straggler-table.md (one line per row and variant: time to TARGET test
# accuracy, final test accuracy, samples/s, data-plane bytes per step, the staleness of the applied gradients, each
# worker's compute time per minibatch and CPU use) and OUT/straggler-accuracy-vs-time.png (`disttrain compare` on the
# straggler runs: test accuracy against time, one line per row). docs/benchmarks.md describes it and its figures.
#
# Usage: tests/modes/straggler-table.sh [ROW...]   (as root)
#   ROW = "LABEL SETTING...": LABEL of letters, digits and . _ - (others become _); each SETTING a config key and value,
#   Section:Key=Value (made DISTTRAIN_Section__Key), or an environment variable DISTTRAIN_...=Value, e.g.
#     "Sync Training:Mode=Sync"
#     "Sync-TopK-0.01 Training:Mode=Sync Cluster:Compression=TopK Cluster:TopKRatio=0.01"
#   Default: Sync; Async with momentum 0.23 (what Async's warning names for 3 workers and the config's 0.9);
#   BoundedStaleness with StalenessBound 2; LocalSgd with LocalSteps 4.
# Environment: EPOCHS (10), TARGET (0.88), QUOTA (30: percent of a core per equal worker), STRAGGLER (3: the slowed
#   worker's number), PERIOD_US (10000: the CFS period of the quotas, microseconds), CONFIG
#   (configs/fashion-mnist-mlp.json), TIMEOUT (3600 seconds per run), OUT (runs/straggler/<UTC time>), CLI_DLL (a built
#   disttrain.dll; otherwise the CLI is built first).
# Exits 1 when not root, no CPU controller is available or a row is not "LABEL KEY=VALUE...", naming the reason; a run
# that fails or times out is a line of the table saying so (its logs are in its folder), and the script goes on.
set -uo pipefail
cd "$(dirname "$0")/../.."
workers=3
epochs=${EPOCHS:-10}
target=${TARGET:-0.88}
quota=${QUOTA:-30}
straggler=${STRAGGLER:-3}
config=${CONFIG:-configs/fashion-mnist-mlp.json}
timeout=${TIMEOUT:-3600}
out=${OUT:-runs/straggler/$(date -u +%Y%m%d-%H%M%S)}
period_us=${PERIOD_US:-10000}
# As when docs/benchmarks.md's tables were measured: tensors over loopback TCP (true puts them in shared memory).
export DISTTRAIN_Cluster__SharedMemory="${DISTTRAIN_Cluster__SharedMemory:-false}"
rows=("$@")
[ ${#rows[@]} -gt 0 ] || rows=("Sync Training:Mode=Sync" "Async-momentum-0.23 Training:Mode=Async Optimizer:Momentum=0.23"
  "BoundedStaleness-2 Training:Mode=BoundedStaleness Training:StalenessBound=2" "LocalSgd-4 Training:Mode=LocalSgd Training:LocalSteps=4")

fail() { echo "straggler-table.sh: $*" >&2; exit 1; }
for row in "${rows[@]}"; do
  read -r -a words <<< "$row"
  [ ${#words[@]} -gt 0 ] || fail "an empty row: give \"LABEL SETTING...\"."
  for setting in "${words[@]:1}"; do
    [[ "$setting" == ?*=* ]] || fail "row '$row': '$setting' is not a setting; give Section:Key=Value or DISTTRAIN_...=Value."
  done
done
[ "$(id -u)" -eq 0 ] || fail "CPU groups need root (running as uid $(id -u)); run it as root."
[[ "$quota" =~ ^[0-9]+$ ]] && [ "$quota" -ge 2 ] && [ $((quota * workers)) -le 200 ] ||
  fail "QUOTA=$quota: give a whole percent of one core from 2 to $((200 / workers)), so that the $workers workers together stay within 2 cores."
[[ "$straggler" =~ ^[1-3]$ ]] || fail "STRAGGLER=$straggler: give the number of the slowed worker, 1 to $workers."
[[ "$period_us" =~ ^[0-9]+$ ]] && [ "$period_us" -ge 1000 ] && [ "$period_us" -le 1000000 ] ||
  fail "PERIOD_US=$period_us: give the CFS period in microseconds, 1000 to 1000000."
[[ "$epochs" =~ ^[1-9][0-9]*$ ]] || fail "EPOCHS=$epochs: give a positive whole number."

# The CPU controller: cgroup v1 (a cpu hierarchy, cpuacct beside it or in it) or else cgroup v2 (cpu.max).
if [ -f /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]; then
  cgroups=v1; cpu_root=/sys/fs/cgroup/cpu
  acct_root=""; [ -f "$cpu_root/cpuacct.usage" ] || { [ -f /sys/fs/cgroup/cpuacct/cpuacct.usage ] && acct_root=/sys/fs/cgroup/cpuacct; }
elif [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw cpu /sys/fs/cgroup/cgroup.controllers; then
  cgroups=v2; cpu_root=/sys/fs/cgroup; acct_root=""
  grep -qw cpu "$cpu_root/cgroup.subtree_control" || echo +cpu > "$cpu_root/cgroup.subtree_control" ||
    fail "cgroup v2: cannot enable the cpu controller for child groups in $cpu_root/cgroup.subtree_control."
else
  fail "no CPU controller: neither cgroup v1's /sys/fs/cgroup/cpu/cpu.cfs_quota_us nor cgroup v2's cpu in /sys/fs/cgroup/cgroup.controllers. Mount one (e.g. mount -t cgroup -o cpu cgroup /sys/fs/cgroup/cpu)."
fi

bash deploy/local/apt-ensure.sh python3 dataset-fashion-mnist libopenblas0-pthread libdnnl2 openssl
if [ -z "${CLI_DLL:-}" ]; then
  dotnet build src/DistTrain.Cli/DistTrain.Cli.csproj -c Release -nologo -v quiet || fail "the build failed."
  export CLI_DLL=src/DistTrain.Cli/bin/Release/net10.0/disttrain.dll
fi
mkdir -p "$out" || fail "cannot create OUT=$out."

group_name() { echo "disttrain-straggler-$$-worker$1"; }
# The group folders of worker I, comma-separated (v1 with a separate cpuacct hierarchy: both).
group_folders() { local g; g=$(group_name "$1"); echo "$cpu_root/$g${acct_root:+,$acct_root/$g}"; }

make_groups() { # VARIANT
  local i folder quota_us
  for i in $(seq 1 $workers); do
    quota_us=$((quota * period_us / 100)); [ "$1" = straggler ] && [ "$i" -eq "$straggler" ] && quota_us=$((quota_us / 2))
    IFS=, read -r -a folders <<< "$(group_folders "$i")"
    for folder in "${folders[@]}"; do mkdir -p "$folder" || fail "cannot create the CPU group $folder."; done
    if [ $cgroups = v1 ]; then
      echo $period_us > "$cpu_root/$(group_name "$i")/cpu.cfs_period_us" && echo "$quota_us" > "$cpu_root/$(group_name "$i")/cpu.cfs_quota_us"
    else
      echo "$quota_us $period_us" > "$cpu_root/$(group_name "$i")/cpu.max"
    fi || fail "cannot set the quota of $cpu_root/$(group_name "$i")."
    shares[$i]=$(awk -v q="$quota_us" -v p="$period_us" 'BEGIN { printf "%g", 100 * q / p }') # percent of a core
  done
}

remove_groups() {
  local i folder pid
  for i in $(seq 1 $workers); do
    IFS=, read -r -a folders <<< "$(group_folders "$i")"
    for folder in "${folders[@]}"; do
      [ -d "$folder" ] || continue
      # Only this script's worker processes join these groups; any still there are ended before the group goes.
      for pid in $(cat "$folder/cgroup.procs" 2> /dev/null); do kill -9 "$pid" 2> /dev/null; done
      for _ in $(seq 1 50); do rmdir "$folder" 2> /dev/null && break; sleep 0.1; done
      [ ! -d "$folder" ] || echo "straggler-table.sh: could not remove the CPU group $folder" >&2
    done
  done
}

# Per worker: CPU seconds used, CFS periods and throttled periods (cgroup counters of the run).
read_usage() { # FILE
  local i g usage periods throttled
  : > "$1"
  for i in $(seq 1 $workers); do
    g=$(group_name "$i")
    if [ $cgroups = v1 ]; then
      usage=$(awk '{ printf "%.3f", $1 / 1e9 }' "${acct_root:-$cpu_root}/$g/cpuacct.usage" 2> /dev/null)
      periods=$(awk '$1 == "nr_periods" { print $2 }' "$cpu_root/$g/cpu.stat"); throttled=$(awk '$1 == "nr_throttled" { print $2 }' "$cpu_root/$g/cpu.stat")
    else
      usage=$(awk '$1 == "usage_usec" { printf "%.3f", $2 / 1e6 }' "$cpu_root/$g/cpu.stat")
      periods=$(awk '$1 == "nr_periods" { print $2 }' "$cpu_root/$g/cpu.stat"); throttled=$(awk '$1 == "nr_throttled" { print $2 }' "$cpu_root/$g/cpu.stat")
    fi
    echo "$i ${shares[$i]} ${usage:-nan} ${periods:-0} ${throttled:-0}" >> "$1"
  done
}

cluster_pid=""
cleanup() {
  [ -z "$cluster_pid" ] || kill -- -"$cluster_pid" 2> /dev/null
  cluster_pid=""
  remove_groups
}
trap cleanup EXIT
trap 'exit 130' INT TERM

run_one() { # LABEL VARIANT SETTING...
  local label=$1 variant=$2; shift 2
  local dir="$out/$label-$variant" vars=() setting key started ended code load_start
  rm -rf "$dir"; mkdir -p "$dir"
  for setting in "$@"; do
    key=${setting%%=*}
    [[ "$key" == DISTTRAIN_* ]] || key="DISTTRAIN_${key//:/__}"
    vars+=("$key=${setting#*=}")
  done
  make_groups "$variant"
  local groups=(); for i in $(seq 1 $workers); do groups+=("$(group_folders "$i")"); done
  load_start=$(cut -d' ' -f1 /proc/loadavg)
  started=$(date +%s.%N)
  env DISTTRAIN_Training__Epochs="$epochs" DISTTRAIN_Compute__BlasThreads=1 DISTTRAIN_Output__Directory="$dir/runs" \
    "${vars[@]}" CPU_GROUPS="${groups[*]}" WORKER_WRAPPER="$PWD/tests/modes/in-cpu-group.sh" \
    setsid bash deploy/local/cluster.sh $workers --config "$config" > "$dir/cluster.log" 2>&1 &
  cluster_pid=$!
  local deadline=$((SECONDS + timeout))
  while kill -0 "$cluster_pid" 2> /dev/null && [ $SECONDS -lt $deadline ]; do sleep 1; done
  if kill -0 "$cluster_pid" 2> /dev/null; then
    kill -- -"$cluster_pid" 2> /dev/null; wait "$cluster_pid" 2> /dev/null; code=124
  else
    wait "$cluster_pid"; code=$?
  fi
  cluster_pid=""
  ended=$(date +%s.%N)
  read_usage "$dir/cpu-usage.txt"
  remove_groups
  # The nodes' logs (cluster.sh keeps them in its own run folder, beside the run's certificates) go next to the results.
  local logs; logs=$(sed -n 's/.*logs in \(.*\)\/\.$/\1/p' "$dir/cluster.log" | head -n 1)
  if [ -n "$logs" ] && [ -d "$logs" ]; then cp -r "$logs" "$dir/logs" && logs="$dir/logs"; fi
  python3 tests/modes/straggler_row.py --label "$label" --variant "$variant" --runs "$dir/runs" --logs "$logs" \
    --usage "$dir/cpu-usage.txt" --straggler "$([ "$variant" = straggler ] && echo "$straggler" || echo 0)" --target "$target" \
    --exit-code "$code" --wall "$(awk -v a="$started" -v b="$ended" 'BEGIN { printf "%.1f", b - a }')" \
    --load "$load_start-$(cut -d' ' -f1 /proc/loadavg)" --cluster-log "$dir/cluster.log" >> "$out/rows.md"
  tail -n 1 "$out/rows.md"
}

: > "$out/rows.md"
straggler_runs=(); straggler_labels=()
echo "Rows: ${#rows[@]}; $epochs epochs; workers at $quota% of a core each, the straggler (worker $straggler) at half that; CPU groups: cgroup $cgroups; output in $out/"
n=0
for row in "${rows[@]}"; do
  read -r -a words <<< "$row"
  label=${words[0]//[^A-Za-z0-9._-]/_}
  n=$((n + 1))
  # Alternate the order within each row, so neither variant always runs first.
  if [ $((n % 2)) -eq 1 ]; then variants=(equal straggler); else variants=(straggler equal); fi
  for variant in "${variants[@]}"; do run_one "$label" "$variant" "${words[@]:1}"; done
  summary=$(ls "$out/$label-straggler"/runs/*/summary.json 2> /dev/null | head -n 1)
  [ -z "$summary" ] || { straggler_runs+=("$(dirname "$summary")"); straggler_labels+=("$label"); }
done

{
  echo "# Training modes with a straggler"
  echo
  echo "Cluster mode on loopback: 1 parameter-server process (no CPU quota) and $workers worker processes, each in its own"
  echo "CPU group (cgroup $cgroups, CFS period $((period_us / 1000)) ms): equal = every worker $quota% of one core; straggler = worker $straggler at $(awk -v q="$quota" 'BEGIN { printf "%g", q / 2 }')%."
  echo "Config \`$config\`, $epochs epochs, Compute:BlasThreads 1; $(nproc) CPUs; $(date -u '+%Y-%m-%d %H:%M UTC')."
  echo
  echo "Seconds to $(python3 -c "print(f'{100 * $target:g}')")% and samples/s: training and evaluation seconds from summary.json, as \`disttrain compare\` counts them."
  echo "Compute ms per minibatch: each worker's mean compute time per gradient report and (its reports applied), from summary.json \`workers\`; * the straggler."
  echo "CPU: cores each worker's group used over the run's wall time (start-up included) and the share of CFS periods it was throttled in."
  echo
  echo "| row | workers | seconds to $(python3 -c "print(f'{100 * $target:g}')")% | final test accuracy | samples/s | data-plane bytes per step | staleness: gradients, mean, p50, p90, max | compute ms per minibatch (reports) by worker | CPU cores used (throttled) by worker | wall s | load avg start-end |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  cat "$out/rows.md"
} > "$out/straggler-table.md"

if [ ${#straggler_runs[@]} -gt 0 ]; then
  { echo; echo "Straggler runs compared (\`disttrain compare\`), plot \`straggler-accuracy-vs-time.png\`:"; echo; echo '```'; } >> "$out/straggler-table.md"
  COLUMNS=200 dotnet "$CLI_DLL" compare "${straggler_runs[@]}" --label "${straggler_labels[@]}" --target "$target" \
    --plot "$out/straggler-accuracy-vs-time.png" >> "$out/straggler-table.md" 2>&1
  echo '```' >> "$out/straggler-table.md"
fi
echo "Table: $out/straggler-table.md"
cat "$out/straggler-table.md"
