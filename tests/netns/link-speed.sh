#!/usr/bin/env bash
# The main job in cluster mode over shaped links: 1 parameter server and 2 workers, each in its own namespace of a lab
# (tests/netns/lab.sh), train configs/fashion-mnist-mlp.json (full Fashion-MNIST, batch 64 per worker) with every node's
# link shaped as PROFILE; the profiles alternate ROUNDS times, so they are measured side by side on a shared machine.
# Per run it prints samples/s (the mean of the epochs after the first, and each epoch), the data plane's bytes per step
# (the parameter server's own count), and where a step's time goes as the parameter server sees it (steps.csv means:
# the round, the slowest worker's compute, averaging and update, messaging, the workers' wait for weights), in ms.
#
# Usage: tests/netns/link-speed.sh [PROFILE...]   (as root)
#   PROFILE = RATE/DELAY_MS (tc rate, one-way latency), or none for unshaped veth links. Default: none 1gbit/0.2 100mbit/2.
#   EPOCHS (3) per run, ROUNDS (2), OUT (runs/lab-link-speed) for the logs.
set -uo pipefail
cd "$(dirname "$0")/../.."
source tests/netns/lab.sh
source tests/netns/lab-cluster.sh
set +e
profiles=("$@")
[ ${#profiles[@]} -gt 0 ] || profiles=(none 1gbit/0.2 100mbit/2)
epochs=${EPOCHS:-3}
rounds=${ROUNDS:-2}
out=${OUT:-runs/lab-link-speed}
lab_script_prepare link-speed.sh

lab=""
trap '[ -z "$lab" ] || lab_down "$lab"' EXIT
echo "Main job, 1 parameter server + 2 workers, $epochs epochs per run; $(uptime | sed 's/.*load/load/')"
printf '%-12s | %-10s | %-34s | %-16s | %s\n' "link" "samples/s" "per epoch" "bytes per step" "ms per step: round, compute, update, messaging, waiting"
n=0
for round in $(seq 1 "$rounds"); do
  for profile in "${profiles[@]}"; do
    n=$((n + 1))
    lab="dtls$$x$n"
    run="$out/$(date -u +%Y%m%d-%H%M%S)-${profile//\//_}"
    lab_up "$lab" 3 $$ || exit 1
    if [ "$profile" != none ]; then
      IFS=/ read -r rate delay <<< "$profile"
      for i in 1 2 3; do lab_shape "$lab" "$i" --rate "$rate" --delay "$delay" || exit 1; done
    fi
    lab_cluster_prepare "$run"
    common=(DISTTRAIN_Cluster__MinWorkers=2 DISTTRAIN_Compute__BlasThreads=1 DISTTRAIN_Training__Epochs="$epochs"
      DISTTRAIN_Cluster__SeedNodes__1="akka.tcp://disttrain@$(lab_addr "$lab" 1):4053")
    lab_cluster_start "$lab" 1 parameter-server "$run/parameter-server.log" "${common[@]}"
    ps=$LAB_CLUSTER_PID
    for i in 2 3; do lab_cluster_start "$lab" "$i" worker "$run/worker-$i.log" "${common[@]}"; done
    wait "$ps"
    status=$?
    sleep 1
    lab_down "$lab" 2> "$run/link-delay.txt"
    lab=""
    if [ "$status" -ne 0 ]; then echo "$profile: the parameter server exited with $status; log: $run/parameter-server.log" >&2; continue; fi
    per_epoch=$(grep -E '^[0-9.]+ epoch +[0-9]+/[0-9]+ +train loss' "$run/parameter-server.log" | awk '{ for (i = 1; i < NF; i++) if ($(i + 1) == "samples/s") { gsub(",", "", $i); printf "%s%s", sep, $i; sep = " " } }')
    mean=$(echo "$per_epoch" | awk '{ s = 0; for (i = 2; i <= NF; i++) s += $i; printf "%.0f", (NF > 1 ? s / (NF - 1) : $1) }')
    bytes=$(grep -oE '[0-9,]+ bytes per step' "$run/parameter-server.log" | head -1 | cut -d' ' -f1)
    steps=$(find "$run/runs" -name steps.csv | head -1)
    split=$(awk -F, 'NR > 1 { r += $7; c += $8; u += $9; m += $10; w += $11; n++ } END { if (n) printf "%.1f, %.1f, %.1f, %.1f, %.1f", 1000 * r / n, 1000 * c / n, 1000 * u / n, 1000 * m / n, 1000 * w / n }' "$steps")
    printf '%-12s | %-10s | %-34s | %-16s | %s\n' "$profile" "$mean" "$per_epoch" "$bytes" "$split"
  done
done
