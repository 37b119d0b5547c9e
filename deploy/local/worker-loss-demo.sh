#!/usr/bin/env bash
# Losing a worker, measured: a parameter-server node and 3 worker nodes on loopback train
# configs/fashion-mnist-mlp.json (Cluster:MinWorkers one less than the worker nodes, 2, unless set); with KILL=1
# (the default) one worker gets kill -9 when the parameter server prints "epoch  3/10   50%", and the job goes
# on with the others. Logs and the run folder go to OUT (default runs/worker-loss); compare the final accuracy
# with KILL=0. docs/reliability.md has the figures.
# WORKERS (default 3) sets the worker nodes (at least 2 with KILL=1, so one is left after the kill), KILL_AT the
# progress line that triggers the kill; DISTTRAIN_* variables override the config as usual (for example
# DISTTRAIN_Training__BatchSizePerWorker=16; a DISTTRAIN_Cluster__MinWorkers set must leave the job able to go on:
# at most WORKERS - 1 with KILL=1, WORKERS with KILL=0).
# The run has its own CA, node certificate, job secret and free ports (deploy/local/cluster-env.sh).
# Ctrl-C stops every node (at its next step; a second Ctrl-C ends them at once), waits for them and exits with the
# parameter server's code (130: cancelled). SIGTERM does the same, sent to the script alone (kill -TERM PID), which passes
# it on to every node, or to its whole process group (kill -TERM -PGID, timeout), which reaches every node directly; a
# second SIGTERM, sent as the first was, ends them at once. SIGINT to one node stops that node as it stops
# `disttrain node` started by hand. Stopped so, the script's own line is all it prints (not bash's "Terminated" for a
# command of its own that the group's signal ended).
# However the script ends, it exits only after every node it started has: workers still running 30 s after the parameter
# server has ended are stopped (SIGTERM, as Ctrl-C), and on any other way out (an error) the nodes are.
# CLI_DLL: a disttrain.dll already built (skips the build); a relative path is the caller's folder's.
# Exit code: the parameter server's, 2 for a WORKERS or MinWorkers that cannot work or a CLI_DLL that is not there, the
# build's when the build fails, or 3
# when KILL=1 and no progress line matched KILL_AT (nothing was killed; the workers are stopped).
# Usage: KILL=1 [WORKERS=3] [KILL_AT='epoch  3/10   50%'] deploy/local/worker-loss-demo.sh [OUT]
set -uo pipefail
caller="$PWD"
cd "$(dirname "$0")/../.."
out="${1:-runs/worker-loss}"; kill_one="${KILL:-1}"; workers="${WORKERS:-3}"; kill_at="${KILL_AT:-epoch  3/10   50%}"
# The worker nodes, and Cluster:MinWorkers: the job must go on after the kill, with WORKERS - 1 workers.
least=1; [ "$kill_one" != 1 ] || least=2
if ! [[ "$workers" =~ ^[0-9]+$ ]] || [ "$((10#$workers))" -lt "$least" ] || [ "$((10#$workers))" -gt 256 ]; then
  echo "worker-loss-demo.sh: WORKERS = '$workers'; give $least to 256 worker nodes$([ "$least" = 1 ] || echo " (with KILL=1 one is killed, and the job goes on with the others)")." >&2
  exit 2
fi
workers=$((10#$workers))
most=$workers; [ "$kill_one" != 1 ] || most=$((workers - 1))
min_workers="${DISTTRAIN_Cluster__MinWorkers:-$(( workers > 1 ? workers - 1 : 1 ))}"
if [[ "$min_workers" =~ ^[0-9]+$ ]] && [ "$((10#$min_workers))" -gt "$most" ]; then
  if [ "$kill_one" = 1 ]; then
    echo "worker-loss-demo.sh: DISTTRAIN_Cluster__MinWorkers = $min_workers with WORKERS = $workers: after the kill $most worker$([ "$most" = 1 ] && echo ' is' || echo 's are') left, so the job would pause for Cluster:PauseTimeoutSeconds and then fail. Set DISTTRAIN_Cluster__MinWorkers to at most $most (or leave it unset: WORKERS - 1), or raise WORKERS." >&2
  else
    echo "worker-loss-demo.sh: DISTTRAIN_Cluster__MinWorkers = $min_workers with WORKERS = $workers: the job would wait for more workers than start. Set DISTTRAIN_Cluster__MinWorkers to at most $most (or leave it unset: WORKERS - 1), or raise WORKERS." >&2
  fi
  exit 2
fi
source deploy/local/cli-dll.sh "worker-loss-demo.sh" "$caller"  # sets disttrain: CLI_DLL, or the build's (before anything changes)
mkdir -p "$out"

bash deploy/local/apt-ensure.sh dataset-fashion-mnist libopenblas0-pthread libdnnl2 openssl

RUN="$out"
source deploy/local/cluster-env.sh  # this run's job, certificates (mutual TLS) and free ports
export DISTTRAIN_Cluster__MinWorkers="$min_workers" DISTTRAIN_Compute__BlasThreads=1 DISTTRAIN_Output__Directory="$out/runs"
ps_port=$DISTTRAIN_Cluster__Port
pids=()  # every node started: the parameter server and the workers
source deploy/local/ctrl-c.sh  # with_sigint: the nodes take SIGINT as `disttrain node` started by hand does
start_ctrl_c_probe
quiet_stderr  # no "Terminated" line of bash's when a signal to the process group ends a command of the script's
# end_probe: ends the Ctrl-C probe, on the ways out that clear the EXIT trap (it would otherwise run on after the script),
# and then the filter of the script's standard error.
end_probe() { kill "$ctrl_c_probe" 2>/dev/null; wait_gone "$ctrl_c_probe"; end_quiet_stderr; }
# Ctrl-C reaches the whole process group, nodes included, and each stops at its next step; a SIGINT to this script alone
# is passed on to every node as SIGTERM, which a node takes as it takes Ctrl-C (deploy/local/ctrl-c.sh: a node that got
# the Ctrl-C itself gets no SIGTERM, which would be its second signal). A second one ends them at once. The script then
# waits for them all.
interrupted=0; signals=0
trap 'interrupted=1; signals=$(( signals + 1 ))
  if [ "$signals" -gt 1 ]; then [ ${#pids[@]} -eq 0 ] || kill -TERM "${pids[@]}" 2>/dev/null || true
  elif ctrl_c_reached_group; then echo "Ctrl-C: every node stops at its next step (Ctrl-C again stops them at once); their logs are in $out." >&2
  else
    echo "SIGINT: stopping every node with SIGTERM (SIGINT again stops them at once); their logs are in $out." >&2
    [ ${#pids[@]} -eq 0 ] || kill -TERM "${pids[@]}" 2>/dev/null || true
  fi' INT
# SIGTERM as cluster.sh takes it: to the whole process group it reaches the nodes, which stop at their next step; to the
# script alone it is passed on to every node. A second one is passed on only if the probe has not ended within 1 s, that
# is when neither reached the whole group: after one that did, a SIGTERM to the group reaches the nodes directly, and
# timeout sends its SIGTERM to the script and then to its group, which passed on twice would end the nodes at once.
trap 'interrupted=1; signals=$(( signals + 1 ))
  if [ "$signals" -gt 1 ]; then ctrl_c_reached_group || [ ${#pids[@]} -eq 0 ] || kill -TERM "${pids[@]}" 2>/dev/null || true
  elif ctrl_c_reached_group; then echo "SIGTERM: every node got it and stops at its next step (SIGTERM to the process group again, or Ctrl-C, stops them at once); their logs are in $out." >&2
  else
    echo "SIGTERM: passing it on to every node, so each stops at its next step (SIGTERM again stops them at once); their logs are in $out." >&2
    [ ${#pids[@]} -eq 0 ] || kill -TERM "${pids[@]}" 2>/dev/null || true
  fi' TERM
# wait_for PID: waits until that process has exited and returns its exit code; a wait that Ctrl-C interrupted (128 + 2,
# whatever the node's state) starts again.
wait_for() {
  local code seen
  while true; do
    seen=$signals
    wait "$1"; code=$?
    if [ "$code" -gt 128 ] && [ "$seen" != "$signals" ]; then continue; fi
    return "$code"
  done
}
# poll_nodes S: sets `alive` to the nodes still running, once they have all ended or after S seconds.
poll_nodes() {
  local pid end=$(( SECONDS + $1 ))
  while true; do
    alive=(); for pid in "${pids[@]}"; do ! kill -0 "$pid" 2>/dev/null || alive+=("$pid"); done
    [ ${#alive[@]} -gt 0 ] && [ "$SECONDS" -lt "$end" ] || return 0
    sleep 0.1
  done
}
# stop_nodes GRACE: no node outlives the script. The nodes still running after GRACE seconds (the workers leave on their
# own once the job has ended) get SIGTERM, which a node takes as Ctrl-C, and those still running 30 s later a second one,
# which ends a node at once; then every node is waited for.
stop_nodes() {
  local pid
  poll_nodes "$1"; [ ${#alive[@]} -eq 0 ] || kill -TERM "${alive[@]}" 2>/dev/null
  poll_nodes 30; [ ${#alive[@]} -eq 0 ] || kill -TERM "${alive[@]}" 2>/dev/null
  for pid in "${pids[@]}"; do wait_for "$pid"; done
}
# Any other way out (an error, a signal other than SIGINT and SIGTERM) stops the nodes and waits for them too.
trap 'stop_nodes 0; end_probe' EXIT
victim=
for i in $(seq 1 "$workers"); do
  [ "$interrupted" = 0 ] || break  # Ctrl-C or SIGTERM while the nodes start: start no more
  "${with_sigint[@]}" DISTTRAIN_Cluster__Port=0 "${disttrain[@]}" node --role worker --config configs/fashion-mnist-mlp.json > "$out/worker-$i.log" 2>&1 &
  pids+=("$!"); [ "$i" != 2 ] || victim=$!  # worker 2 is the one killed
done
ps=
if [ "$interrupted" = 0 ]; then
  "${with_sigint[@]}" DISTTRAIN_Cluster__Port="$ps_port" "${disttrain[@]}" node --role parameter-server --config configs/fashion-mnist-mlp.json > "$out/parameter-server.log" 2>&1 &
  ps=$!; pids+=("$ps")
fi
killed=0
if [ "$kill_one" = 1 ] && [ "$interrupted" = 0 ]; then
  until grep -qF "$kill_at" "$out/parameter-server.log" 2>/dev/null; do
    [ "$interrupted" = 0 ] || break
    kill -0 "$ps" 2>/dev/null || break
    sleep 0.05
  done
  if [ "$interrupted" = 0 ] && grep -qF "$kill_at" "$out/parameter-server.log" 2>/dev/null; then
    if kill -9 "$victim" 2>/dev/null; then
      # Reaped here, with bash's own standard error closed: otherwise bash prints a raw job line ("line N: PID Killed ...")
      # at its next command. Its PID may be another process's from now on, so no signal may go to it.
      { wait "$victim"; } 2>/dev/null
      killed=1
      workers_left=(); for pid in "${pids[@]}"; do [ "$pid" = "$victim" ] || workers_left+=("$pid"); done; pids=("${workers_left[@]}")
    fi
    echo "killed worker process $victim at $(date -u +%H:%M:%S.%N)"
  fi
fi
status=130
[ -z "$ps" ] || { wait_for "$ps"; status=$?; }
# The parameter server has been waited for: its PID may be another process's from now on, so no signal may go to it.
workers_left=(); for pid in "${pids[@]}"; do [ "$pid" = "$ps" ] || workers_left+=("$pid"); done; pids=("${workers_left[@]}")
if [ "$interrupted" = 1 ]; then
  for pid in "${pids[@]}"; do wait_for "$pid"; done  # every node has ended before the script does
  end_probe; trap - EXIT
  # A second Ctrl-C or SIGTERM ended the parameter server at once (143, SIGTERM's default action): the run was still cancelled.
  [ "$status" -ne 143 ] || status=130
  exit "$status"
fi
if [ "$kill_one" = 1 ] && [ "$killed" = 0 ]; then
  # The progress lines' percentages depend on the steps per epoch (local SGD prints 26%, 51%, 75%): say so, do not measure nothing.
  echo "error: no worker was killed: the parameter server never printed '$kill_at'. Its progress lines were:" >&2
  grep -E "^epoch " "$out/parameter-server.log" | head -8 >&2
  echo "Set KILL_AT to one of them (as printed) and run again. Stopping the worker nodes; nothing was measured." >&2
  stop_nodes 0  # SIGTERM, which a node takes as Ctrl-C: they leave at once
  end_probe; trap - EXIT
  exit 3
fi
grep -E "is lost|go(es)? to|Test accuracy" "$out/parameter-server.log"
stop_nodes 30  # the workers leave once the job has ended; a worker that does not is stopped
end_probe; trap - EXIT
exit "$status"
