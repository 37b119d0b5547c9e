#!/usr/bin/env bash
# Cluster mode on one machine without docker: one parameter-server node and N worker nodes as local
# processes on loopback, with the environment variables deploy/docker-compose.yml sets (service names
# mapped to 127.0.0.1). Usage: deploy/local/cluster.sh [WORKERS] [--config FILE] [--data DIR] [--output DIR]
#   deploy/local/cluster.sh 2 --config configs/fashion-mnist-mlp.json
# The options are disttrain node's, given to every node; without --config the nodes train configs/fashion-mnist-mlp.json.
# Other settings are DISTTRAIN_ variables (DISTTRAIN_Training__Epochs=2 deploy/local/cluster.sh 2).
# Each run gets its own folder runs/cluster/<UTC time>-<pid>/ with its logs, its CA, node certificate and
# job secret (deploy/certs/make-certs.sh; mutual TLS is on unless DISTTRAIN_Cluster__Tls=false), and free
# ports, so two local clusters run side by side without meeting. Results go to runs/ as in single-node mode.
# If any node fails (a taken port, a refused worker: exit code 1 or 2), the script says which, stops the others and
# exits with that node's code. A worker killed by a signal (kill -9 mid-run) does not end the run: the job goes on
# without it, pausing below Cluster:MinWorkers, as the README's cluster-mode section describes.
# Ctrl-C stops the nodes as Ctrl-C stops a single node (at the next step, keeping what the parameter server keeps), lets
# them write their last lines to their logs and the screen, and exits with the parameter server's code (130); a second
# Ctrl-C ends them at once, and the script still exits only after every node has. SIGTERM does the same, sent to the
# script alone (kill -TERM PID, docker stop, systemd's KillMode=mixed), which passes it on to every node, or to its whole
# process group (kill -TERM -PGID, timeout, systemd's KillMode=control-group), which reaches every node directly: the
# script exits with the parameter server's code, 130, as a node stopped by SIGTERM does; a second SIGTERM, sent as the
# first was, ends the nodes at once. SIGINT to one node (kill -INT PID)
# stops that node as it stops `disttrain node` started by hand: the parameter server cancels the job (the script says
# so and exits 130, as on Ctrl-C), a worker leaves it.
# Cluster:MinWorkers is WORKERS unless DISTTRAIN_Cluster__MinWorkers is set. With DISTTRAIN_Metrics__Port=P (0 is off; or
# Metrics:Port in the config file) the
# parameter server serves metrics on port P, worker i on port P + i and shard node k on P + WORKERS + k (each node needs its own port); a given
# DISTTRAIN_Cluster__Port or DISTTRAIN_Cluster__DataPort among those ports, or the two equal, stops the script before
# anything starts (exit code 2, naming both settings).
# DISTTRAIN_Cluster__ShardNodes=true: the script also starts Cluster:ParameterServerShards shard nodes (disttrain node --role
# parameter-shard, each with a free data port, logs shard-K.log), on which the parameter server places its shards; that
# takes Training:Mode Sync (README). The --config file may set Cluster:ShardNodes, Cluster:ParameterServerShards and
# Metrics:Port instead: the script reads them as the parameter server will, with `disttrain config` (the file, then the
# DISTTRAIN_ variables), which also runs the config loader's checks before any node starts (a problem: exit code 2,
# naming it). SHARD_SPARES=N (0 to 16, default 0) starts N shard nodes more, spares that host nothing until a shard node
# is lost. A shard node that ends before the job does ends the job (the parameter server fails it, naming the shard)
# unless the run has written a checkpoint (Checkpoint:Directory set) and a spare is up: the parameter server then starts
# the job again from its newest checkpoint, with a spare in the lost one's place (README, Cluster:ShardNodes).
# WORKER_WRAPPER: a command put before each worker node's, given the worker's number (1 to WORKERS) as its first
# argument and the node's command after it, which it must exec (tests/modes/in-cpu-group.sh puts each worker in a CPU
# group this way, before the node starts).
# PIN_WORKERS=1: worker node i runs only on its own block of Compute:BlasThreads CPUs (the i-th, in turn, of the CPUs
# this script may use; with 2 workers on 2 cores, worker i on core i - 1), with taskset, as MPI's --bind-to core places
# its ranks; the parameter server is not pinned. On this 2-core machine it made cluster mode faster (docs/benchmarks.md), but a
# pinned worker cannot move off a core that other work keeps busy, so on a shared machine it can be slower.
set -euo pipefail
# The nodes run in the caller's folder, so relative paths (in the options, the config file, DISTTRAIN_ variables, CLI_DLL
# and WORKER_WRAPPER) are the caller's, as for any disttrain command; the script's own files are found from the
# repository's root.
caller="$PWD"
cd "$(dirname "$0")/../.."
repo="$PWD"
usage="Usage: deploy/local/cluster.sh [WORKERS] [--config FILE] [--data DIR] [--output DIR]"
# --help, -h or -? anywhere among the arguments prints the usage and exits 0, before the others are checked (so a bad
# option or WORKERS elsewhere on the line does not hide the help asked for).
for argument in "$@"; do
  case "$argument" in
    --help|-h|-\?)
      echo "$usage"
      echo "Starts one parameter-server node and WORKERS (1 to 256, default 2) worker nodes of disttrain node on this machine, on"
      echo "loopback; the options are disttrain node's, given to every node (without --config: configs/fashion-mnist-mlp.json)."
      echo "Other settings are DISTTRAIN_ variables, for example DISTTRAIN_Training__Epochs=2 deploy/local/cluster.sh 2."
      echo "Logs go to runs/cluster/<run>/logs/ in the repository; Ctrl-C or SIGTERM stops every node. More in the comment at the top of deploy/local/cluster.sh."
      exit 0 ;;
  esac
done
# WORKERS, when given, comes first; without it (no arguments, or the node options straight away) there are 2.
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then
  workers=$((10#$1)); shift
  if [ "$workers" -lt 1 ] || [ "$workers" -gt 256 ]; then
    echo "cluster.sh: WORKERS = $workers; give 1 to 256 worker nodes. $usage" >&2; exit 2
  fi
elif [ $# -eq 0 ] || [[ "$1" == -* ]]; then
  workers=2
elif [ -z "$1" ]; then
  workers=2; shift  # an empty WORKERS (cluster.sh "" ...) is the default
else
  echo "cluster.sh: '$1' is not a number of workers. $usage" >&2; exit 2
fi
# The node options, checked before anything is built, installed or created: disttrain node takes --config/-c, --data and
# --output/-o (the script gives each node its --role), each with its value as the next argument or after '='. Without
# --config the nodes train configs/fashion-mnist-mlp.json.
has_config=0; config_file=""; i=1
while [ "$i" -le $# ]; do
  option="${!i}"; name="${option%%=*}"
  case "$name" in
    --config|-c|--data|--output|-o)
      case "$name" in --config|-c) has_config=1 ;; esac
      if [ "$name" = "$option" ]; then  # the value is the next argument
        i=$((i + 1))
        [ "$i" -le $# ] && [ -n "${!i}" ] || { echo "cluster.sh: $name needs a value. $usage" >&2; exit 2; }
        [ "$has_config" = 0 ] || [ -n "$config_file" ] || config_file="${!i}"
      elif [ -z "${option#*=}" ]; then  # --config= with nothing after the '='
        echo "cluster.sh: $name needs a value. $usage" >&2; exit 2
      else
        [ "$has_config" = 0 ] || [ -n "$config_file" ] || config_file="${option#*=}"
      fi ;;
    -r|--role)
      echo "cluster.sh: $name: the script gives each node its role (one parameter server, WORKERS workers). $usage" >&2; exit 2 ;;
    *)
      echo "cluster.sh: disttrain node has no option '$option'; it takes --config FILE, --data DIR and --output DIR. Set other settings with DISTTRAIN_ variables, for example DISTTRAIN_Training__Epochs=2 deploy/local/cluster.sh 2 (README, Configuration). $usage" >&2
      exit 2 ;;
  esac
  i=$((i + 1))
done

# The nodes match DISTTRAIN_ variables ignoring case (DISTTRAIN_METRICS__PORT is Metrics:Port), and refuse one setting given
# twice. The settings this script reads or gives each node are renamed to the spelling it uses, so that its own value for a
# node (a metrics port, Cluster:Port 0) replaces the caller's instead of being a second one; two spellings of one of them
# stop the script here (exit code 2, naming both).
declare -A own_spelling=() spelled_as=()
for name in DISTTRAIN_Cluster__Port DISTTRAIN_Cluster__DataPort DISTTRAIN_Metrics__Port DISTTRAIN_Cluster__MinWorkers \
    DISTTRAIN_Compute__BlasThreads DISTTRAIN_Cluster__ShardNodes DISTTRAIN_Cluster__ParameterServerShards DISTTRAIN_Cluster__JobName \
    DISTTRAIN_Cluster__Secret DISTTRAIN_Cluster__SecretFile DISTTRAIN_Cluster__CertificateAuthorityFile DISTTRAIN_Cluster__CertificateFile \
    DISTTRAIN_Cluster__CertificateKeyFile DISTTRAIN_Cluster__Hostname DISTTRAIN_Cluster__PublicHostname DISTTRAIN_Cluster__SeedNodes__0; do
  own_spelling[${name^^}]=$name
done
for name in $(compgen -e); do
  canonical=${own_spelling[${name^^}]:-}
  [ -n "$canonical" ] || continue
  if [ -n "${spelled_as[$canonical]:-}" ]; then
    key=${canonical#DISTTRAIN_}
    echo "cluster.sh: ${spelled_as[$canonical]} and $name both set ${key//__/:}: DISTTRAIN_ variables are matched ignoring case, so these are one setting given twice. Unset one of them." >&2
    exit 2
  fi
  spelled_as[$canonical]=$name
  [ "$name" = "$canonical" ] || { export "$canonical=${!name}"; unset "$name"; }
done
unset own_spelling spelled_as canonical

# Shard nodes: read from the environment here, to check the ports before anything is built; once the CLI is built, from
# the config file and the environment together (disttrain config, below).
shard_nodes=0; shard_nodes_setting="${DISTTRAIN_Cluster__ShardNodes:-}"
[ "${shard_nodes_setting,,}" != true ] || shard_nodes="${DISTTRAIN_Cluster__ParameterServerShards:-1}"
# Not a number, or out of Cluster:ParameterServerShards' range 1 to 16: no shard node starts, and the nodes' config check
# names the value (rather than each of up to 99 shard nodes refusing it in turn).
if [[ "$shard_nodes" =~ ^[0-9]{1,2}$ ]] && [ "$((10#$shard_nodes))" -ge 1 ] && [ "$((10#$shard_nodes))" -le 16 ]; then shard_nodes=$((10#$shard_nodes)); else shard_nodes=0; fi
# SHARD_SPARES: shard nodes started beyond the shards, added to shard_nodes wherever that is set (with shard nodes on only).
shard_spares="${SHARD_SPARES:-0}"
if ! [[ "$shard_spares" =~ ^[0-9]{1,2}$ ]] || [ "$((10#$shard_spares))" -gt 16 ]; then
  echo "cluster.sh: SHARD_SPARES = '$shard_spares' is not a whole number from 0 to 16: set it to the spare shard nodes to start beside the shards (0, the default, for none)." >&2
  exit 2
fi
shard_spares=$((10#$shard_spares))
[ "$shard_nodes" = 0 ] || shard_nodes=$((shard_nodes + shard_spares))
# The ports this run hands out, each of which must be its own: the parameter server's Cluster:Port and Cluster:DataPort,
# and with DISTTRAIN_Metrics__Port=P (0 is off) the metrics ports P (the parameter server's) to P + WORKERS (worker i's is
# P + i), and with shard nodes on to P + WORKERS + SHARD_NODES (shard node k's is P + WORKERS + k); the workers' Cluster:Port is 0, a free one, and so is that of a worker add-worker.sh starts, which serves no
# metrics unless its caller gives it a DISTTRAIN_Metrics__Port of its own. Checked here, before anything is built,
# installed or started, for the ports given, and again below once the run has picked free ports for those not given and
# the config file's Metrics:Port and shard nodes are known (a clash then removes the run folder it made). A value that
# is not a whole number is left to the nodes' config check.
# metrics_ports: sets metrics_port (empty when off), metrics_nodes and metrics_last from DISTTRAIN_Metrics__Port and
# shard_nodes, and fails, saying so, if the last node's port would pass 65535.
metrics_ports() {
  metrics_port=""
  metrics_nodes=$((workers + shard_nodes))  # the nodes with a metrics port after the parameter server's
  metrics_last="WORKERS"; [ "$shard_nodes" = 0 ] || metrics_last="WORKERS + SHARD_NODES"
  if [[ "${DISTTRAIN_Metrics__Port:-}" =~ ^[0-9]{1,5}$ ]] && [ $((10#$DISTTRAIN_Metrics__Port)) -gt 0 ]; then
    metrics_port=$((10#$DISTTRAIN_Metrics__Port))
    if [ "$metrics_port" -le 65535 ] && [ $((metrics_port + metrics_nodes)) -gt 65535 ]; then
      if [ "$shard_nodes" = 0 ]; then last="worker $workers"; else last="shard node $shard_nodes"; fi
      echo "cluster.sh: DISTTRAIN_Metrics__Port = $metrics_port would give $last metrics port $((metrics_port + metrics_nodes)), past 65535 (worker i gets DISTTRAIN_Metrics__Port + i$([ "$shard_nodes" = 0 ] || echo ", shard node k DISTTRAIN_Metrics__Port + WORKERS + k")). Set DISTTRAIN_Metrics__Port to at most $((65535 - metrics_nodes))." >&2
      return 1
    fi
  fi
}
metrics_ports || exit 2
# port_clash: prints nothing and succeeds when the run's ports known so far are all different; otherwise prints which
# two settings share a port and what to change, and fails.
port_clash() {
  local -A owner=()
  local entries=() cluster_ports=() entry port what i first candidate moved
  if [[ "${DISTTRAIN_Cluster__Port:-}" =~ ^[0-9]{1,5}$ ]] && [ $((10#$DISTTRAIN_Cluster__Port)) -gt 0 ]; then
    entries+=("$((10#$DISTTRAIN_Cluster__Port)) DISTTRAIN_Cluster__Port (the parameter server's cluster port)"); cluster_ports+=("$((10#$DISTTRAIN_Cluster__Port))")
  fi
  if [[ "${DISTTRAIN_Cluster__DataPort:-}" =~ ^[0-9]{1,5}$ ]] && [ $((10#$DISTTRAIN_Cluster__DataPort)) -gt 0 ]; then
    entries+=("$((10#$DISTTRAIN_Cluster__DataPort)) DISTTRAIN_Cluster__DataPort (the parameter server's data-plane port)"); cluster_ports+=("$((10#$DISTTRAIN_Cluster__DataPort))")
  fi
  if [ -n "$metrics_port" ]; then
    entries+=("$metrics_port the parameter server's metrics port (DISTTRAIN_Metrics__Port = $metrics_port)")
    for ((i = 1; i <= workers; i++)); do entries+=("$((metrics_port + i)) worker $i's metrics port (DISTTRAIN_Metrics__Port + $i = $metrics_port + $i)"); done
    for ((i = 1; i <= shard_nodes; i++)); do entries+=("$((metrics_port + workers + i)) shard node $i's metrics port (DISTTRAIN_Metrics__Port + WORKERS + $i = $metrics_port + $workers + $i)"); done
  fi
  for entry in "${entries[@]}"; do
    port=${entry%% *}; what=${entry#* }
    if [ -z "${owner[$port]:-}" ]; then owner[$port]=$what; continue; fi
    first=${owner[$port]}
    echo -n "cluster.sh: port $port is both $first and $what, but each port of the run must be its own. "
    if [[ "$what" != *Metrics__Port* ]]; then
      echo "Give DISTTRAIN_Cluster__Port and DISTTRAIN_Cluster__DataPort different ports, or leave one unset (the script then picks a free one)."
    else
      # The lowest DISTTRAIN_Metrics__Port from the one given up whose ports leave out the parameter server's.
      candidate=$metrics_port; moved=1
      while [ "$moved" = 1 ]; do
        moved=0
        for i in "${cluster_ports[@]}"; do
          if [ "$i" -ge "$candidate" ] && [ "$i" -le $((candidate + metrics_nodes)) ]; then candidate=$((i + 1)); moved=1; fi
        done
      done
      echo -n "The metrics ports are DISTTRAIN_Metrics__Port to DISTTRAIN_Metrics__Port + $metrics_last ($metrics_port to $((metrics_port + metrics_nodes))): "
      if [ $((candidate + metrics_nodes)) -le 65535 ]; then echo -n "set DISTTRAIN_Metrics__Port=$candidate (ports $candidate to $((candidate + metrics_nodes)))"
      else echo -n "set DISTTRAIN_Metrics__Port so that they leave out port $port"; fi
      echo ", or move ${first%% *} out of $metrics_port to $((metrics_port + metrics_nodes))."
    fi
    return 1
  done
}
if ! clash=$(port_clash); then echo "$clash" >&2; exit 2; fi
[ "$has_config" = 1 ] || set -- --config "$repo/configs/fashion-mnist-mlp.json" "$@"

# CLI_DLL: a disttrain.dll already built (skips the build); a relative path is the caller's. Checked before anything is installed.
source deploy/local/cli-dll.sh "cluster.sh" "$caller"  # sets disttrain
bash deploy/local/apt-ensure.sh dataset-fashion-mnist libopenblas0-pthread libdnnl2 openssl
# The script checks its nodes every 0.1 s all through training. bash's loadable `sleep` (Debian's bash-builtins) waits
# without starting a process, where each /usr/bin/sleep is a fork and an exec: about 6 ms of CPU each on a small VM, so
# ten a second, with the forks of the script's own bash, took about 4% of a 2-core machine from the nodes
# (docs/benchmarks.md). Only a speed-up: without the package (not installable here, or another bash than Debian's, which
# the package is built for) the script uses /usr/bin/sleep. Not `read -t`: bash 5.2 abandons a trap that runs during it
# when its timeout comes, and the traps below wait up to 1 s.
case "$(readlink -f "$BASH")" in /usr/bin/bash|/bin/bash)
  bash deploy/local/apt-ensure.sh bash-builtins || echo "cluster.sh: could not install bash-builtins; the script checks its nodes with /usr/bin/sleep, which takes the nodes a little CPU." >&2
  enable -f /usr/lib/bash/sleep sleep 2>/dev/null || true ;;
esac

RUN="runs/cluster/$(date -u +%Y%m%d-%H%M%S)-$$"
given_port="${DISTTRAIN_Cluster__Port:-}" given_data_port="${DISTTRAIN_Cluster__DataPort:-}"
source deploy/local/cluster-env.sh
# This run's certificates and secret, for nodes that run in the caller's folder.
for key in DISTTRAIN_Cluster__SecretFile DISTTRAIN_Cluster__CertificateAuthorityFile DISTTRAIN_Cluster__CertificateFile DISTTRAIN_Cluster__CertificateKeyFile; do
  [[ "${!key:-}" != "$RUN/"* ]] || export "$key=$repo/${!key}"
done
export DISTTRAIN_Cluster__MinWorkers="${DISTTRAIN_Cluster__MinWorkers:-$workers}"
# The worker nodes share this machine's cores.
export DISTTRAIN_Compute__BlasThreads="${DISTTRAIN_Compute__BlasThreads:-$(( $(nproc) / workers > 0 ? $(nproc) / workers : 1 ))}"
# The config as the parameter server will read it (the file, then the DISTTRAIN_ variables, this run's among them, then
# the options), checked by the same loader before any node starts (a problem: its message, no run folder left, and exit
# code 2; the nodes check the rest, such as the data and the model's fit, as they start); and the settings the script
# acts on, read the same way, so that a config file may set them too: Cluster:ShardNodes and
# Cluster:ParameterServerShards (how many shard nodes to start) and Metrics:Port (each node's metrics port is counted
# from it, as from DISTTRAIN_Metrics__Port). A CLI_DLL of a build before `disttrain config` (a baseline of
# cluster-vs-single.sh, say) has no such command: the script then reads them from the environment only, as it did then.
# --check-node also checks what the nodes check on this machine as they start (the run folder, the job secret); a build
# before that option is asked without it.
config_query() { (cd "$caller" && "${disttrain[@]}" config "$@" --get Cluster:ShardNodes --get Cluster:ParameterServerShards --get Metrics:Port 2>&1); }
code=0; settings=$(config_query "$@" --check-node) || code=$?
if [ "$code" != 0 ] && grep -q "Unrecognized command or argument '--check-node'" <<< "$settings"; then code=0; settings=$(config_query "$@") || code=$?; fi
if [ "$code" = 0 ]; then
  # The values are the last three lines (a warning of the loader's, on standard error, comes before them).
  { read -r config_shard_nodes; read -r config_shards; read -r config_metrics_port; } <<< "$(tail -n 3 <<< "$settings")"
  shard_nodes=0; [ "$config_shard_nodes" != true ] || shard_nodes=$((config_shards + shard_spares))
  [ -n "${DISTTRAIN_Metrics__Port:-}" ] || [ "$config_metrics_port" = 0 ] || export DISTTRAIN_Metrics__Port="$config_metrics_port"
elif grep -qE "^error: 'config' is not a command|Unrecognized command or argument 'config'" <<< "$settings"; then
  echo "cluster.sh: CLI_DLL = ${CLI_DLL:-} has no 'disttrain config' command (a build before it): the script reads Cluster:ShardNodes, Cluster:ParameterServerShards and Metrics:Port from the DISTTRAIN_ variables only, not from the config file." >&2
else
  echo "$settings" >&2; rm -rf "${repo:?}/$RUN"; exit "$code"
fi
metrics_ports || { rm -rf "${repo:?}/$RUN"; exit 2; }
# A free port picked for the parameter server (cluster-env.sh) may be its other one or a metrics port: it is picked again.
for _ in $(seq 20); do
  ! clash=$(port_clash) || break
  [ -n "$given_port" ] || DISTTRAIN_Cluster__Port=$(bash deploy/local/free-port.sh)
  [ -n "$given_data_port" ] || DISTTRAIN_Cluster__DataPort=$(bash deploy/local/free-port.sh)
done
if ! clash=$(port_clash); then echo "$clash" >&2; rm -rf "${repo:?}/$RUN"; exit 2; fi
export DISTTRAIN_Cluster__SeedNodes__0="akka.tcp://disttrain@127.0.0.1:${DISTTRAIN_Cluster__Port}"
# A relative WORKER_WRAPPER that is a file in the caller's folder is that file; any other name is a command on the PATH.
[ -z "${WORKER_WRAPPER:-}" ] || [[ "$WORKER_WRAPPER" == /* ]] || [ ! -e "$caller/$WORKER_WRAPPER" ] || WORKER_WRAPPER="$caller/$WORKER_WRAPPER"

# PIN_WORKERS: the CPUs this script may use (its affinity, which a container or cgroup may limit; not nproc, which
# OMP_NUM_THREADS lowers), and worker i's block of DISTTRAIN_Compute__BlasThreads of them, in turn.
allowed_cpus=()
for range in $(taskset -pc $$ | sed 's/.*: //' | tr ',' ' '); do
  if [[ "$range" == *-* ]]; then for cpu in $(seq "${range%-*}" "${range#*-}"); do allowed_cpus+=("$cpu"); done; else allowed_cpus+=("$range"); fi
done
cores_of_worker() { # cores_of_worker I -> "c1,c2,...": worker I's DISTTRAIN_Compute__BlasThreads CPUs
  local threads=$(( DISTTRAIN_Compute__BlasThreads > 0 ? DISTTRAIN_Compute__BlasThreads : 1 )) first list="" k
  for ((k = 0; k < threads; k++)); do
    first=$(( (($1 - 1) * threads + k) % ${#allowed_cpus[@]} ))
    list+="${list:+,}${allowed_cpus[$first]}"
  done
  echo "$list"
}

logs="$repo/$RUN/logs"
declare -A names
pids=()  # the nodes not known to have ended: the traps signal these only, never a PID the system may have reused
started=0
# On exit the nodes still running are signalled, and the filter of the script's standard error (below) is waited for.
# The probe is waited for too: killed without a wait, it could outlive the script by a moment (a suite run found it
# still in the script's process group right after the exit), while it exists only (wait_gone: a plain wait for a probe
# whose end bash lost would block as long as the filter runs, which ends only after the script).
trap '[ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true
  [ -z "${ctrl_c_probe:-}" ] || { kill "$ctrl_c_probe" 2>/dev/null; wait_gone "$ctrl_c_probe"; } || true
  [ -z "${stderr_filter:-}" ] || { exec 2>&"$screen" {screen}>&-; wait "$stderr_filter" 2>/dev/null || true; }' EXIT
# The nodes take SIGINT as `disttrain node` started by hand does (deploy/local/ctrl-c.sh): SIGINT to one node stops that
# node. Ctrl-C reaches the whole process group, nodes included, and each stops at its next step; the log pipeline of the
# parameter server ignores it, so nothing is cut off. A SIGINT to this script alone is passed on to every node as
# SIGTERM, which a node takes as it takes Ctrl-C (GracefulCancellation). A second one (Ctrl-C or SIGINT) ends every node
# at once (the nodes that got the first Ctrl-C directly get no SIGTERM from it, which would be their second signal).
# SIGTERM is told the same way: to the whole process group it reaches the nodes (the log pipeline ignores it too), to
# the script alone it is passed on.
source "$repo/deploy/local/ctrl-c.sh"
start_ctrl_c_probe
interrupted=0; signals=0
trap 'interrupted=1; signals=$(( signals + 1 )); [ "$started" = 1 ] || exit 130
  if [ "$signals" -gt 1 ]; then
    [ ${#pids[@]} -eq 0 ] || kill -TERM "${pids[@]}" 2>/dev/null || true
  elif ctrl_c_reached_group; then
    echo "Ctrl-C: every node stops at its next step (their Ctrl-C lines below); Ctrl-C again stops them at once." >&2
  else
    echo "SIGINT: passing it on to every node as SIGTERM, so each stops at its next step (their SIGTERM lines below); SIGINT again stops them at once." >&2
    [ ${#pids[@]} -eq 0 ] || kill -TERM "${pids[@]}" 2>/dev/null || true
  fi' INT
# A second stop passes SIGTERM on only if the probe has not ended within 1 s (ctrl_c_reached_group), that is when no
# stop so far reached the whole group: after one that did, a SIGTERM to the group reaches the nodes directly, and one to
# the script alone cannot be told from it. timeout sends its SIGTERM twice, to the script and then to its whole group,
# often as two signals to the script: passed on, the first would stop the nodes and the second end them at once.
trap 'interrupted=1; signals=$(( signals + 1 )); [ "$started" = 1 ] || exit 143
  if [ "$signals" -gt 1 ]; then
    ctrl_c_reached_group || [ ${#pids[@]} -eq 0 ] || kill -TERM "${pids[@]}" 2>/dev/null || true
  elif ctrl_c_reached_group; then
    echo "SIGTERM: every node got it and stops at its next step (their SIGTERM lines below); SIGTERM to the process group again, or Ctrl-C, stops them at once." >&2
  else
    echo "SIGTERM: passing it on to every node, so each stops at its next step (their SIGTERM lines below); SIGTERM again stops them at once." >&2
    [ ${#pids[@]} -eq 0 ] || kill -TERM "${pids[@]}" 2>/dev/null || true
  fi' TERM
[ "$shard_nodes" != 0 ] || [ "$shard_spares" = 0 ] || echo "cluster.sh: SHARD_SPARES = $shard_spares is ignored: Cluster:ShardNodes is off, so no shard node starts." >&2
echo "Job $DISTTRAIN_Cluster__JobName: parameter server on port $DISTTRAIN_Cluster__Port (data plane $DISTTRAIN_Cluster__DataPort), $workers worker node$([ "$workers" = 1 ] || echo s)$([ "$shard_nodes" = 0 ] || echo ", $shard_nodes shard node$([ "$shard_nodes" = 1 ] || echo s)")$([ "$shard_nodes" = 0 ] || [ "$shard_spares" = 0 ] || echo " ($shard_spares of them spare$([ "$shard_spares" = 1 ] || echo s))"); logs in $logs/."
# $RUN/add-worker.sh starts one more worker node in this run (a replacement for a killed one; it joins from the
# next epoch), with the run's DISTTRAIN_ variables, which win over the caller's but for the node's own settings
# (Compute, Metrics, Cluster:SharedMemory and Cluster:JoinTimeoutSeconds); deploy/local/add-worker-env.sh names each
# variable of the caller's it ignores. Its Cluster:Port is 0, a free one, and it serves no metrics unless given a port
# of its own. Its log goes to the standard output.
{ echo '#!/usr/bin/env bash'
  echo "# Starts one more worker node in this run of deploy/local/cluster.sh, with the run's settings (deploy/local/add-worker-env.sh)."
  echo "cd $(printf %q "$caller")"
  echo 'declare -A run=('
  for name in $(compgen -e); do
    case "${name^^}" in DISTTRAIN_METRICS__PORT|DISTTRAIN_CLUSTER__PORT) ;; DISTTRAIN_*) printf '  [%s]=%q\n' "$name" "${!name}" ;; esac
  done
  # No metrics port unless the caller gives it one: the run's (from a variable or the config file) is the parameter server's.
  [ -z "$metrics_port" ] || printf '  [DISTTRAIN_Metrics__Port]=0\n'
  printf '  [DISTTRAIN_Cluster__Port]=0\n)\n'
  echo "source $(printf %q "$repo/deploy/local/add-worker-env.sh")"
  printf 'exec'; printf ' %q' "${disttrain[@]}" node --role worker "$@"; echo; } > "$repo/$RUN/add-worker.sh"
chmod +x "$repo/$RUN/add-worker.sh"
cd "$caller"
[ -z "$metrics_port" ] || echo "Metrics: worker i on port $metrics_port + i$([ "$shard_nodes" = 0 ] || echo ", shard node k on $metrics_port + $workers + k") (the parameter server prints its own address)."
# bash prints a raw job line ("cluster.sh: line N: PID Killed   ... node --role worker ...") on its standard error when
# it has reaped a node killed by a signal (SIGKILL, a crash) and then reads the script's next line or runs any other
# command that is not a builtin (tail, a $(...), and sleep when bash's loadable one is absent), which can be anywhere
# below; the script reports such a node in its own words. From here on the script's standard error goes through a filter
# that drops those job lines of the nodes, and the line "Terminated" that bash prints when a SIGTERM to the process group
# ends a command of the script's own (such as /usr/bin/sleep between its checks), only: bash's other messages, its
# errors included, pass. It ignores SIGINT and SIGTERM, so that a Ctrl-C or a SIGTERM to the process group leaves the
# script's messages a way to the screen; the EXIT trap waits for it, so that nothing reaches the screen after the script
# ends.
# `screen` is the real standard error, which the nodes do not get (their output goes to their logs).
exec {screen}>&2 2> >(trap '' INT TERM; exec sed -u -E -e '/^.*: line [0-9]+: +[0-9]+ .* node --role (parameter-server|worker|parameter-shard) /d' -e '/^Terminated$/d' >&2)
stderr_filter=$!
# The parameter server's output goes to its log and, without the [INFO] lines (but the one naming the checkpoint a
# resume or takeover continues from, and the one saying early stopping goes on from its record), to the screen, each
# line as the node prints it: GNU sed -u reads its input a line at a time and flushes each line it prints (not awk:
# Debian's mawk reads a pipe in blocks, so the screen got the lines only at the job's end). The pipeline ends when the
# node closes its output (the script's own copy of the pipe is closed at once, and later nodes never get it).
exec {ps_output}> >(trap '' INT TERM; exec 2>&"$screen" {screen}>&-; tee "$logs/parameter-server.log" | sed -u -E '/^\[INFO\]/ { /Resuming from checkpoint|EarlyStopping goes on/!d; }')
ps_output_pid=$!
"${with_sigint[@]}" "${disttrain[@]}" node --role parameter-server "$@" >&"$ps_output" 2>&1 {screen}>&- &
ps_pid=$!; pids+=("$ps_pid"); names[$ps_pid]=parameter-server; started=1
exec {ps_output}>&-
for i in $(seq 1 "$workers"); do
  [ "$interrupted" = 0 ] || break  # Ctrl-C while the nodes start: start no more
  wrapper=(); [ -z "${WORKER_WRAPPER:-}" ] || wrapper=("$WORKER_WRAPPER" "$i")
  [ "${PIN_WORKERS:-0}" != 1 ] || wrapper+=(taskset -c "$(cores_of_worker "$i")")
  metrics=(); [ -z "$metrics_port" ] || metrics=("DISTTRAIN_Metrics__Port=$(( metrics_port + i ))")
  "${with_sigint[@]}" DISTTRAIN_Cluster__Port=0 "${metrics[@]}" "${wrapper[@]}" "${disttrain[@]}" node --role worker "$@" > "$logs/worker-$i.log" 2>&1 {screen}>&- &
  pids+=($!); names[$!]="worker-$i"
done
# Shard nodes (Cluster:ShardNodes): a free data port each, and metrics on P + WORKERS + k with DISTTRAIN_Metrics__Port=P.
for k in $(seq 1 "$shard_nodes"); do
  [ "$interrupted" = 0 ] || break
  "${with_sigint[@]}" DISTTRAIN_Cluster__Port=0 DISTTRAIN_Cluster__DataPort="$(bash "$repo/deploy/local/free-port.sh")" DISTTRAIN_Metrics__Port="$([ -z "$metrics_port" ] && echo 0 || echo $((metrics_port + workers + k)))" \
    "${disttrain[@]}" node --role parameter-shard "$@" > "$logs/shard-$k.log" 2>&1 {screen}>&- &
  pids+=($!); names[$!]="shard-$k"
done
# wait_for PID: waits until that process has exited and returns its exit code. A Ctrl-C interrupts `wait` (which then
# returns 128 + 2 at once, whatever the node's state): the wait starts again, so the node's end is not skipped and its
# code is its own.
wait_for() {
  local code seen
  while true; do
    seen=$signals
    set +e; wait "$1"; code=$?; set -e
    if [ "$code" -gt 128 ] && [ "$seen" != "$signals" ]; then continue; fi
    return "$code"
  done
}
# next_ended: sets `ended` to a node of `running` that has exited (and `code` to its exit code), polling every 0.1 s.
# Not `wait -n`: bash 5.2 loses the status of a child that ends while a trap interrupts `wait -n` ("no such job" at
# every later call, or a wrong code), which a second Ctrl-C made happen.
next_ended() {
  ended=
  while [ -z "$ended" ]; do
    for pid in "${running[@]}"; do kill -0 "$pid" 2>/dev/null || { ended=$pid; break; }; done
    [ -n "$ended" ] || sleep 0.1 || true
  done
  code=0; wait_for "$ended" || code=$?
}
# forget PID: the node has ended; it leaves `running`, and `pids`, which the traps signal.
forget() {
  local rest=() pid
  for pid in "${running[@]}"; do [ "$pid" = "$1" ] || rest+=("$pid"); done
  running=("${rest[@]}"); pids=("${rest[@]}")
}
# parameter_server_ended CODE: the job has ended with the parameter server's exit code CODE. Sets `status`, the script's
# exit code, and says why the run stops unless the job succeeded or Ctrl-C stopped it.
parameter_server_ended() {
  status=$1; ended=$ps_pid
  if [ "$interrupted" = 1 ]; then
    # Ctrl-C twice: the second one ended the parameter server at once (143, SIGTERM's default action); the run was
    # still cancelled. Any other signal (a crash, the OOM killer) keeps its code.
    [ "$1" -ne 143 ] || status=130
  elif [ "$1" -eq 130 ]; then
    # SIGINT or SIGTERM to the parameter server alone (kill -INT PID): it cancelled the job as on Ctrl-C (its Ctrl-C or
    # SIGTERM line and its cancelled: line are on the screen), and the workers leave; not a failure.
    echo "parameter-server was stopped (SIGINT or SIGTERM to it alone): the job is cancelled, as on Ctrl-C, and the workers leave it. Its log: $logs/parameter-server.log." >&2
  elif [ "$1" -gt 128 ]; then
    # Killed by a signal (code 128 + N: kill -9, a crash, the OOM killer): said as a worker's is; its checkpoints, if it
    # wrote any, are where the job can go on.
    echo "parameter-server was killed (signal $(( $1 - 128 ))); stopping the run (its log: $logs/parameter-server.log)." >&2
    echo "With Checkpoint:Directory set (in the config or DISTTRAIN_Checkpoint__Directory), the same command with DISTTRAIN_Checkpoint__Resume=true continues from its newest checkpoint; without it, set it on the next run to be able to resume after a crash." >&2
  elif [ "$1" -ne 0 ]; then
    echo "parameter-server exited with code $1; stopping the run (its log: $logs/parameter-server.log)." >&2
  fi
}
# joined_as NAME: " (worker N in the parameter server's lines)" for the worker node whose log is NAME.log, from the last
# "Joined the job as worker N" line there, or "" if it never joined. The parameter server numbers workers in the order they
# registered, from 0, which need not be the order the script started them in (worker-1.log may be its worker 0, 1 or 2).
joined_as() {
  local number
  number=$(grep -o 'Joined the job as worker [0-9]*' "$logs/$1.log" 2>/dev/null | tail -n 1 | grep -o '[0-9]*$') || true
  [ -z "$number" ] || echo " (worker $number in the parameter server's lines)"
}
# stopped_alone NAME: true when the node whose log is NAME.log took a SIGTERM or Ctrl-C itself (GracefulCancellation's
# notice): a worker that exits 130 for that was stopped alone, where one that leaves a job the parameter server cancelled
# exits 130 too, without that line. Callers check first that the whole run was not interrupted (its nodes have the line too).
stopped_alone() { grep -qE '(Ctrl-C|SIGTERM): stopping at the next step' "$logs/$1.log" 2>/dev/null; }
# stopped_as_job_ended NAME: names a worker stopped alone whose end the job's end followed within seconds (or preceded), which
# the loop below does not report as a worker the job goes on without.
stopped_as_job_ended() {
  echo "$1$(joined_as "$1") was stopped (SIGTERM or Ctrl-C to it alone) within seconds of the job's end; it left the job just before that end. Its log: $logs/$1.log." >&2
}
# The job ends when the parameter server does; a node that fails before that ends the run.
status=0
running=("${pids[@]}")
while true; do
  next_ended
  forget "$ended"
  if [ "$ended" = "$ps_pid" ]; then parameter_server_ended "$code"; break; fi
  [ "$interrupted" = 0 ] || continue  # a worker that stopped on Ctrl-C
  if [ "$code" -ne 0 ] && [ "$code" -ne 4 ] && { [ "$code" -le 128 ] || [ "$code" -eq 130 ]; }; then
    # A worker that fails or leaves as the job ends (the parameter server told it the job failed, or was cancelled: a
    # worker leaves a cancelled job with 130, as when it is stopped alone) is not the cause: give the parameter server a
    # few seconds to end and report its own exit. A worker killed by a signal (code 128 + N) is reported at once.
    # A worker that exits 130 without a signal line of its own left a job the parameter server cancelled: the parameter
    # server is ending (leaving the cluster takes seconds, and more on a loaded machine), so it gets up to a minute. So does
    # one whose log has the job's failure from the parameter server (a divergence, say, which the parameter server exits
    # 3 for): the job failed, not the worker.
    waits=50
    [ "$code" -ne 130 ] || stopped_alone "${names[$ended]}" || waits=600
    if grep -q '^Job finished: failed: ' "$logs/${names[$ended]}.log" 2>/dev/null; then waits=600; fi
    for _ in $(seq "$waits"); do kill -0 "$ps_pid" 2>/dev/null || break; sleep 0.1 || true; done
    if ! kill -0 "$ps_pid" 2>/dev/null; then
      # The worker's own stop, not the job's end, ended it: it is named as at any other time.
      # (Not after a Ctrl-C or SIGINT of the whole run in those seconds: every worker has its own signal line then.)
      [ "$code" -ne 130 ] || [ "$interrupted" = 1 ] || ! stopped_alone "${names[$ended]}" || stopped_as_job_ended "${names[$ended]}"
      code=0; wait_for "$ps_pid" || code=$?
      forget "$ps_pid"
      parameter_server_ended "$code"
      break
    fi
    [ "$interrupted" = 0 ] || continue  # Ctrl-C in those seconds: the job does not go on
  fi
  if [[ "${names[$ended]}" == shard-* ]] && [ "$code" -ne 0 ]; then
    # The run cannot go on without the shard: the parameter server fails the job, naming the shard, and the loop reports its
    # exit; or, with a checkpoint written, starts the job again from it, with a spare shard node in the lost one's place.
    echo "${names[$ended]} (a shard node) ended with code $code$([ "$code" -le 128 ] || echo " (signal $(( code - 128 )))"); if it hosted a shard, the run cannot go on without it: the job ends, unless it has a checkpoint and a spare shard node is up (SHARD_SPARES), on which the parameter server starts it again (its log says so). Its log: $logs/${names[$ended]}.log." >&2
    continue
  fi
  alive_rule="training pauses while fewer than Cluster:MinWorkers = $DISTTRAIN_Cluster__MinWorkers workers are alive"
  joined=$(joined_as "${names[$ended]}")
  if [ "$code" -eq 130 ]; then
    echo "${names[$ended]}$joined was stopped (SIGTERM or Ctrl-C to it alone); the job goes on without it ($alive_rule). Its log: $logs/${names[$ended]}.log; $repo/$RUN/add-worker.sh starts a replacement." >&2
  elif [ "$code" -eq 4 ]; then
    echo "${names[$ended]}$joined was removed from the cluster (downed by the other nodes after it stopped answering: frozen, or cut off); the job goes on without it ($alive_rule). Its log: $logs/${names[$ended]}.log; $repo/$RUN/add-worker.sh starts a replacement." >&2
  elif [ "$code" -gt 128 ]; then
    echo "${names[$ended]}$joined was killed (signal $(( code - 128 ))); the job goes on without it ($alive_rule). Its log: $logs/${names[$ended]}.log; $repo/$RUN/add-worker.sh starts a replacement." >&2
  elif [ "$code" -ne 0 ]; then
    echo "${names[$ended]}$joined exited with code $code; stopping the run. Its log ($logs/${names[$ended]}.log) ends with:" >&2
    tail -n 3 "$logs/${names[$ended]}.log" >&2 || true
    status=$code; break
  fi
done
if [ "$interrupted" = 1 ]; then
  for pid in "${running[@]}"; do wait_for "$pid" || true; done  # the workers' last lines reach their logs
  pids=()
elif [ "$status" -eq 0 ]; then
  # The job succeeded: a worker that ends with an error now fails the run, but one stopped alone as the job ended (130,
  # with its own SIGTERM or Ctrl-C line) is named and does not. A Ctrl-C or SIGINT of the whole run while the workers
  # end stops them all (130 each, with their own lines): the job's result is saved, so that is no failure either.
  for pid in "${running[@]}"; do
    code=0; wait_for "$pid" || code=$?
    if [ "$code" -eq 130 ] && [ "$interrupted" = 1 ]; then :
    elif [ "$code" -eq 130 ] && stopped_alone "${names[$pid]}"; then stopped_as_job_ended "${names[$pid]}"
    elif [ "$code" -ne 0 ]; then status=1; fi
  done
  pids=()
elif [ ${#running[@]} -gt 0 ]; then
  # The run failed, or the parameter server cancelled the job: the nodes still running are stopped (SIGTERM, as Ctrl-C)
  # and waited for, so that none outlives the script; one still running after 30 s gets a second SIGTERM, which ends a
  # node at once.
  # alive_after TENTHS PID...: waits up to TENTHS tenths of a second for the PIDs to end; those still running are left in alive.
  alive_after() {
    local tenths=$1 pid; shift
    for _ in $(seq "$tenths"); do
      alive=(); for pid in "$@"; do ! kill -0 "$pid" 2>/dev/null || alive+=("$pid"); done
      [ ${#alive[@]} -gt 0 ] || return 0; sleep 0.1 || true
    done
  }
  kill -TERM "${running[@]}" 2>/dev/null || true
  alive_after 300 "${running[@]}"
  # Only nodes still running (not yet waited for, so their PIDs are theirs) get the second SIGTERM; one that has not ended
  # 10 s later (frozen: SIGSTOP, a debugger) is killed, and named, rather than waited for without end.
  if [ ${#alive[@]} -gt 0 ]; then
    kill -TERM "${alive[@]}" 2>/dev/null || true
    alive_after 100 "${alive[@]}"
    for pid in "${alive[@]}"; do
      echo "${names[$pid]} did not end within 40 s of the run's end (frozen, or stopped by SIGSTOP?); killing it (SIGKILL). Its log: $logs/${names[$pid]}.log." >&2
      kill -KILL "$pid" 2>/dev/null || true
    done
  fi
  for pid in "${running[@]}"; do wait_for "$pid" || true; [ "$pid" != "$ps_pid" ] || ended=$ps_pid; done
  pids=()
fi
# Once the parameter server has ended, its last lines reach its log and the screen before the script exits.
[ "$ended" != "$ps_pid" ] || wait_for "$ps_output_pid" || true
exit "$status"
