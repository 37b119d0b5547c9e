#!/usr/bin/env bash
# Losing the parameter server, measured: two parameter-server nodes (the active one and a standby) and 2
# worker nodes on loopback train configs/fashion-mnist-mlp.json with checkpoints every 100 steps in a folder
# both parameter servers share. With KILL=1 (the default) the active parameter server gets kill -9 when it
# prints the progress line KILL_AT (default "epoch  3/10   50%"), or the first line past it: a progress line
# of that epoch at a higher percentage (local SGD prints 26%, 51%, 75%) or any line of a later epoch (the
# number of epochs after the slash is not compared). The standby takes over from the newest checkpoint and
# the workers register with it again. Logs, checkpoints and the run folder go to OUT (default runs/failover);
# compare the final accuracy and weights with KILL=0. docs/reliability.md has the figures. DISTTRAIN_*
# variables override the config as usual. The run has its own CA, node certificate, job secret and free
# ports (deploy/local/cluster-env.sh), so it can run beside another cluster.
# CLI_DLL: a disttrain.dll already built (skips the build); a relative path is the caller's folder's.
# Ctrl-C stops every node (at its next step; a second Ctrl-C ends them at once), waits for them and exits 130. SIGTERM does
# the same, sent to the script alone (kill -TERM PID), which passes it on to every node, or to its whole process group
# (kill -TERM -PGID, timeout), which reaches every node directly; a second SIGTERM, sent as the first was, ends them at
# once. SIGINT to one node stops that node as it stops `disttrain node` started by hand. Stopped so, the script's own line
# is all it prints (not bash's "Terminated" for a command of its own that the group's signal ended).
# Exit code: the parameter server's that finished the job, 2 when KILL_AT is not a progress line, a CLI_DLL is not
# there or the active parameter server failed to start, the build's when the build fails, or 3 when KILL=1 and the active parameter server ended before
# printing KILL_AT or a line past it (nothing was killed; the other nodes are stopped).
# Usage: KILL=1 [KILL_AT='epoch  3/10   50%'] deploy/local/failover-demo.sh [OUT]
set -uo pipefail
caller="$PWD"
cd "$(dirname "$0")/../.."
out="${1:-runs/failover}"; kill_active="${KILL:-1}"; kill_at="${KILL_AT:-epoch  3/10   50%}"
# KILL_AT as the parameter server prints a progress line: "epoch", the epoch/the epochs, the percentage.
if [[ "$kill_at" =~ ^\ *epoch\ +([0-9]+)/[0-9]+\ +([0-9]+)%\ *$ ]]; then
  kill_epoch=$((10#${BASH_REMATCH[1]})) kill_percent=$((10#${BASH_REMATCH[2]}))
else
  echo "failover-demo.sh: KILL_AT = '$kill_at' is not a progress line; give one as the parameter server prints it, for example KILL_AT='epoch  3/10   50%'." >&2
  exit 2
fi
source deploy/local/cli-dll.sh "failover-demo.sh" "$caller"  # sets disttrain: CLI_DLL, or the build's (before anything changes)
mkdir -p "$out"
rm -rf "$out/checkpoints"

bash deploy/local/apt-ensure.sh dataset-fashion-mnist libopenblas0-pthread libdnnl2 openssl
config=configs/fashion-mnist-mlp.json

RUN="$out"
source deploy/local/cluster-env.sh  # this run's job, certificates (mutual TLS) and free ports
export DISTTRAIN_Cluster__MinWorkers=2 DISTTRAIN_Compute__BlasThreads=1 DISTTRAIN_Output__Directory="$out/runs"
active_port=$DISTTRAIN_Cluster__Port active_data_port=$DISTTRAIN_Cluster__DataPort
standby_port=$(bash deploy/local/free-port.sh) standby_data_port=$(bash deploy/local/free-port.sh)
export DISTTRAIN_Cluster__SeedNodes__1="akka.tcp://disttrain@127.0.0.1:${standby_port}"
ps_settings=(DISTTRAIN_Checkpoint__Directory="$out/checkpoints" DISTTRAIN_Checkpoint__EverySteps=100)
pids=()
source deploy/local/ctrl-c.sh  # with_sigint: the nodes take SIGINT as `disttrain node` started by hand does
start_ctrl_c_probe
quiet_stderr  # no "Terminated" line of bash's when a signal to the process group ends a command of the script's
trap 'kill "${pids[@]}" "$ctrl_c_probe" 2>/dev/null || true; end_quiet_stderr' EXIT
# Ctrl-C reaches the whole process group, nodes included, and each stops at its next step; a SIGINT to this script alone
# is passed on to every node as SIGTERM, which a node takes as Ctrl-C (deploy/local/ctrl-c.sh: a node that got the Ctrl-C
# itself gets no SIGTERM, which would be its second signal). The script waits for them all and exits 130; a second
# Ctrl-C (or SIGINT) ends them at once.
signals=0
# A function, so that `first` is this signal's own: a second signal runs the trap again inside the first one's (in its
# wait for the probe or for the nodes), and must only pass the stop on, leaving the wait and the exit to the first. With
# the count alone, the first trap read 2 after a second SIGINT within the probe's second, returned without waiting or
# exiting, and the script went on with the run (the job trained to its end).
on_sigint() {
  local first=0
  signals=$(( signals + 1 )); [ "$signals" -gt 1 ] || first=1
  if [ "$first" = 0 ]; then [ ${#pids[@]} -eq 0 ] || kill -TERM "${pids[@]}" 2>/dev/null || true; return 0; fi
  if ctrl_c_reached_group; then echo "Ctrl-C: every node stops at its next step (Ctrl-C again stops them at once); their logs are in $out." >&2
  else
    echo "SIGINT: stopping every node with SIGTERM (SIGINT again stops them at once); their logs are in $out." >&2
    [ ${#pids[@]} -eq 0 ] || kill -TERM "${pids[@]}" 2>/dev/null || true
  fi
  kill "$ctrl_c_probe" 2>/dev/null; wait_gone "${pids[@]}" "$ctrl_c_probe"; trap - EXIT; end_quiet_stderr; exit 130
}
trap on_sigint INT
# SIGTERM as cluster.sh takes it: to the whole process group it reaches the nodes, which stop at their next step; to the
# script alone it is passed on to every node. Then the script waits for every node and exits 130. A second one is passed
# on only if the probe has not ended within 1 s, that is when neither reached the whole group: after one that did, a
# SIGTERM to the group reaches the nodes directly, and timeout sends its SIGTERM to the script and then to its group,
# which passed on twice would end the nodes at once. (The probe runs until every node has ended, for that check.) A
# function, so that `first` is this signal's own: a second signal runs the trap again inside the first one's wait.
on_sigterm() {
  local first=0
  signals=$(( signals + 1 )); [ "$signals" -gt 1 ] || first=1
  if [ "$first" = 0 ]; then ctrl_c_reached_group || [ ${#pids[@]} -eq 0 ] || kill -TERM "${pids[@]}" 2>/dev/null || true; return 0; fi
  if ctrl_c_reached_group; then echo "SIGTERM: every node got it and stops at its next step (SIGTERM to the process group again, or Ctrl-C, stops them at once); their logs are in $out." >&2
  else
    echo "SIGTERM: passing it on to every node, so each stops at its next step (SIGTERM again stops them at once); their logs are in $out." >&2
    [ ${#pids[@]} -eq 0 ] || kill -TERM "${pids[@]}" 2>/dev/null || true
  fi
  local pid
  for pid in "${pids[@]}"; do while kill -0 "$pid" 2>/dev/null; do wait "$pid"; done; done  # a wait another signal cut short starts again
  kill "$ctrl_c_probe" 2>/dev/null; wait_gone "$ctrl_c_probe"; trap - EXIT; end_quiet_stderr; exit 130
}
trap on_sigterm TERM
# reached LOG: LOG has a progress line of KILL_AT's epoch at or past its percentage, or a line of a later epoch. awk reads
# to the end (no early exit), so that grep never dies of SIGPIPE, which pipefail would turn into "not reached".
reached() {
  grep -E '^epoch +[0-9]+/[0-9]+ ' "$1" 2>/dev/null | awk -v e="$kill_epoch" -v p="$kill_percent" '
    { split($2, n, "/") }
    n[1] + 0 > e || (n[1] + 0 == e && $3 ~ /^[0-9]+%$/ && $3 + 0 >= p) { found = 1 }
    END { exit !found }'
}
"${with_sigint[@]}" "${ps_settings[@]}" DISTTRAIN_Cluster__Port="$active_port" DISTTRAIN_Cluster__DataPort="$active_data_port" \
  "${disttrain[@]}" node --role parameter-server --config "$config" > "$out/ps-active.log" 2>&1 &
active=$!; pids+=("$active")
until grep -q "This node is the active parameter server" "$out/ps-active.log" 2>/dev/null; do
  kill -0 "$active" 2>/dev/null || { echo "the active parameter server exited:" >&2; tail -n 3 "$out/ps-active.log" >&2; exit 2; }
  sleep 0.1
done
"${with_sigint[@]}" "${ps_settings[@]}" DISTTRAIN_Cluster__Port="$standby_port" DISTTRAIN_Cluster__DataPort="$standby_data_port" \
  "${disttrain[@]}" node --role parameter-server --config "$config" > "$out/ps-standby.log" 2>&1 &
standby=$!; pids+=("$standby")
for i in 1 2; do
  "${with_sigint[@]}" DISTTRAIN_Cluster__Port=0 "${disttrain[@]}" node --role worker --config "$config" > "$out/worker-$i.log" 2>&1 &
  pids+=($!)
done
finisher=$active
if [ "$kill_active" = 1 ]; then
  until reached "$out/ps-active.log"; do
    kill -0 "$active" 2>/dev/null || break
    sleep 0.05
  done
  if ! reached "$out/ps-active.log"; then
    wait "$active" 2>/dev/null; code=$?
    if [ "$code" -eq 0 ]; then
      # The progress lines' epochs and percentages depend on the config (Training:Epochs, the steps per epoch): say so,
      # do not measure nothing.
      echo "error: the active parameter server was not killed: it finished the job before printing '$kill_at' or a line past it. Its progress lines were:" >&2
      grep -E "^epoch " "$out/ps-active.log" | head -8 >&2
      echo "Set KILL_AT to one of them (as printed) and run again." >&2
    else
      echo "error: the active parameter server was not killed: it ended with code $code before printing '$kill_at' or a line past it; its log ($out/ps-active.log) ends with:" >&2
      tail -n 3 "$out/ps-active.log" >&2
    fi
    echo "Stopping the other nodes; nothing was measured." >&2
    pids=("${pids[@]:1}")  # the standby and the workers: SIGTERM, which a node takes as Ctrl-C, and wait for them
    kill "${pids[@]}" "$ctrl_c_probe" 2>/dev/null; wait_gone "${pids[@]}" "$ctrl_c_probe"; trap - EXIT; end_quiet_stderr
    exit 3
  fi
  # Reaped here, with bash's own standard error closed: otherwise bash prints a raw job line ("line N: PID Killed ...")
  # at its next command; the line below says it in the script's words.
  { kill -9 "$active"; wait "$active"; } 2>/dev/null
  pids=("${pids[@]:1}")  # reaped: its PID may be another process's from now on, so no signal may go to it
  echo "killed the active parameter server (process $active) at $(date -u +%H:%M:%S.%N)"
  grep -o "Checkpoint [^ ]*: version [0-9]*" "$out/ps-active.log" | tail -1
  finisher=$standby
fi
wait "$finisher"; status=$?
grep -hE "Marking node\(s\) as UNREACHABLE|SBR took decision|Taking over|Resuming from|Training starts|Test accuracy|Final weights" \
  "$out/ps-standby.log" "$out/ps-active.log" | cut -c1-240
trap - EXIT
kill "$ctrl_c_probe" 2>/dev/null
wait_gone "${pids[@]}" "$ctrl_c_probe"  # every node still running (the standby, the workers) and the probe
end_quiet_stderr
exit "$status"
