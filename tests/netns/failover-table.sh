#!/usr/bin/env bash
# Failover speed against false alarms, measured on shaped links: for each failure-detector and split-brain setting, an
# active and a standby parameter server and 2 workers (each in its own namespace of a lab, tests/netns/lab.sh), every
# link 1 Gbit/s with 2 ms latency, 1 ms jitter and 1% loss, train the main job (configs/fashion-mnist-mlp.json, full
# Fashion-MNIST, checkpoints every 100 steps in a folder both parameter servers share) for DURATION seconds; the
# unreachable marks and downing decisions of that time are false alarms (no node failed). Then the active parameter
# server gets kill -9, and the script times the standby's takeover: unreachable, downed, job host started, training
# again (its first applied step: the first line of its sample trace's steps file, polled every 0.1 s). One line per setting; docs/reliability.md has the table.
# A starved process misses heartbeats as a slow link does, so every node runs at nice -10 (LAB_CLUSTER_NICE) and each line
# gives the machine's 1-minute load average over its training time (lowest, mean, highest, sampled every 10 s).
#
# Usage: tests/netns/failover-table.sh [SETTING...]   (as root)
#   SETTING = HEARTBEAT_S/PAUSE_S/STABLE_AFTER_S/REMOVAL_MARGIN_S, e.g. 1/3/10/3 (Cluster:HeartbeatIntervalSeconds,
#   Cluster:AcceptableHeartbeatPauseSeconds, Cluster:StableAfterSeconds, Cluster:RemovalMarginSeconds). Default: the six
#   settings of the table. DURATION (600) seconds of training before the kill; OUT (runs/lab-failover) for the logs.
set -uo pipefail
cd "$(dirname "$0")/../.."
source tests/netns/lab.sh
source tests/netns/lab-cluster.sh
set +e
settings=("$@")
[ ${#settings[@]} -gt 0 ] || settings=(1/3/3/1 1/3/5/1 1/3/10/1 0.5/2/3/1 0.5/2/5/1 0.5/2/10/1)
duration=${DURATION:-600}
export LAB_CLUSTER_NICE=${LAB_CLUSTER_NICE:--10}
out=${OUT:-runs/lab-failover}
lab_script_prepare failover-table.sh

lab=""
trap '[ -z "$lab" ] || lab_down "$lab"' EXIT
wait_for() { # FILE TEXT SECONDS
  local deadline=$((SECONDS + $3))
  until grep -q "$2" "$1" 2> /dev/null; do [ $SECONDS -lt $deadline ] || return 1; sleep 0.2; done
}
first_line_seconds() { # FILE PATTERN [AFTER_EPOCH_SECONDS]
  local line after=${3:-0}
  while IFS= read -r line; do
    local t; t=$(lab_log_seconds "$line") || continue
    if awk -v t="$t" -v a="$after" 'BEGIN { exit !(t >= a) }'; then echo "$t"; return 0; fi
  done < <(grep -E "$2" "$1" 2> /dev/null)
  return 1
}
since() { [ -n "$1" ] && awk -v t="$1" -v k="$2" 'BEGIN { printf "%.1f", t - k }' || echo "-"; }

echo "Links: 1gbit, 2 ms latency, 1 ms jitter, 1% loss each way; ${duration} s of training per setting; $(uptime | sed 's/.*load/load/')"
printf '%-18s | %-26s | %-14s | %-12s | %-40s | %s\n' "hb/pause/stable/margin" "false unreachable marks" "false downings" "nodes lost" "kill -9 -> unreachable, downed, job host, training (s)" "load min/mean/max"
n=0
for setting in "${settings[@]}"; do
  IFS=/ read -r heartbeat pause stable margin <<< "$setting"
  n=$((n + 1))
  lab="dtfo$$x$n"
  run="$out/$(date -u +%Y%m%d-%H%M%S)-${setting//\//_}"
  lab_up "$lab" 4 $$ || exit 1
  for i in 1 2 3 4; do lab_shape "$lab" "$i" --rate 1gbit --delay 2 --jitter 1 --loss 1 || exit 1; done
  lab_cluster_prepare "$run"
  common=(DISTTRAIN_Cluster__HeartbeatIntervalSeconds="$heartbeat" DISTTRAIN_Cluster__AcceptableHeartbeatPauseSeconds="$pause"
    DISTTRAIN_Cluster__StableAfterSeconds="$stable" DISTTRAIN_Cluster__RemovalMarginSeconds="$margin"
    DISTTRAIN_Cluster__MinWorkers=2 DISTTRAIN_Compute__BlasThreads=1 DISTTRAIN_Training__Epochs=1000
    DISTTRAIN_Checkpoint__Directory="$run/checkpoints" DISTTRAIN_Checkpoint__EverySteps=100)
  lab_cluster_start "$lab" 1 parameter-server "$run/ps-active.log" "${common[@]}" DISTTRAIN_Monitoring__SampleTraceDirectory="$run/trace-active"
  active=$LAB_CLUSTER_PID
  wait_for "$run/ps-active.log" "This node is the active parameter server" 120 || { echo "$setting: the active parameter server did not start" >&2; tail -5 "$run/ps-active.log" >&2; lab_down "$lab"; continue; }
  lab_cluster_start "$lab" 2 parameter-server "$run/ps-standby.log" "${common[@]}" DISTTRAIN_Monitoring__SampleTraceDirectory="$run/trace-standby"
  wait_for "$run/ps-standby.log" "Standby parameter server" 120
  for i in 3 4; do lab_cluster_start "$lab" "$i" worker "$run/worker-$i.log" "${common[@]}" DISTTRAIN_Cluster__Port=0; done
  wait_for "$run/ps-active.log" "Training starts" 180 || { echo "$setting: training did not start" >&2; lab_down "$lab"; continue; }
  : > "$run/loadavg.txt"
  for _ in $(seq 1 $((duration / 10))); do cut -d' ' -f1 /proc/loadavg >> "$run/loadavg.txt"; sleep 10; done
  sleep $((duration % 10))
  load=$(awk 'NR == 1 || $1 < lo { lo = $1 } $1 > hi { hi = $1 } { sum += $1 } END { if (NR) printf "%.1f/%.1f/%.1f", lo, sum / NR, hi; else printf "-" }' "$run/loadavg.txt")

  # Everything logged so far is a false alarm: no node has failed yet.
  logs=("$run/ps-active.log" "$run/ps-standby.log" "$run/worker-3.log" "$run/worker-4.log")
  marks=$(cat "${logs[@]}" | grep -c "Marking node(s) as UNREACHABLE")
  marked=$(cat "${logs[@]}" | grep "Marking node(s) as UNREACHABLE" | grep -o "Member(address" | wc -l)
  downings=$(cat "${logs[@]}" | grep -c "Downing akka")
  lost=0
  for log in "${logs[@]}"; do grep -qE "left the cluster before the job ended|Shutting down\.\.\." "$log" && lost=$((lost + 1)); done
  kill -9 "$active"
  killed=$(date -u +%s.%N)
  # The standby's first applied step: its steps file gets its first line after the header.
  training=""
  deadline=$((SECONDS + 180))
  until [ "$(cat "$run"/trace-standby/steps-*.csv 2> /dev/null | wc -l)" -ge 2 ] || [ $SECONDS -ge $deadline ]; do sleep 0.1; done
  [ $SECONDS -ge $deadline ] || training=$(date -u +%s.%N)
  unreachable=$(first_line_seconds "$run/ps-standby.log" "Marking node\(s\) as UNREACHABLE.*$(lab_addr "$lab" 1)" "$killed")
  downed=$(first_line_seconds "$run/ps-standby.log" "Downing akka.*$(lab_addr "$lab" 1)" "$killed")
  host=$(first_line_seconds "$run/ps-standby.log" "Taking over the job" "$killed")
  sleep 2
  printf '%-18s | %-26s | %-14s | %-12s | %-40s | %s\n' "$setting" "$marks events ($marked nodes)" "$downings" "$lost of 4" \
    "$(since "$unreachable" "$killed"), $(since "$downed" "$killed"), $(since "$host" "$killed"), $(since "$training" "$killed")" "$load"
  lab_down "$lab" 2> "$run/link-delay.txt"
  lab=""
done
