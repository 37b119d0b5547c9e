#!/usr/bin/env bash
# Runs a command inside a CPU group: moves this process into the group of worker number N, then execs the command, so
# the command and every thread it starts run under the group's CPU quota from their first instruction (the .NET runtime
# also sizes its thread pool and GC from the quota it sees at start-up). Used as deploy/local/cluster.sh's
# WORKER_WRAPPER by tests/modes/straggler-table.sh.
# Usage: CPU_GROUPS="DIR1 DIR2 ..." in-cpu-group.sh N COMMAND...
#   CPU_GROUPS: per worker number, the group folders to join, separated by spaces; a worker's entry may name several
#   folders joined with commas (cgroup v1: its cpu and cpuacct groups). Exits 2 naming the folder if joining fails.
set -euo pipefail
n=$1; shift
read -r -a groups <<< "${CPU_GROUPS:?set CPU_GROUPS to the group folders of the workers}"
[ "$n" -ge 1 ] && [ "$n" -le "${#groups[@]}" ] || { echo "in-cpu-group.sh: no CPU group for worker $n (CPU_GROUPS has ${#groups[@]})" >&2; exit 2; }
IFS=, read -r -a folders <<< "${groups[$((n - 1))]}"
for folder in "${folders[@]}"; do
  echo $$ > "$folder/cgroup.procs" || { echo "in-cpu-group.sh: cannot join the CPU group $folder (as root, with the group made first)" >&2; exit 2; }
done
exec "$@"
