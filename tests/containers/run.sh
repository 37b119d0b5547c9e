#!/usr/bin/env bash
# The docker path, for real: builds the image from the repository's Dockerfile, runs deploy/docker-compose.yml
# unchanged (the parameter server, the standby, 2 workers and Prometheus) over mutual TLS, as a user runs it, and
# attacks it:
#   0. certificates: the cluster's CA, node certificates and job secret made by deploy/certs/make-certs.sh into
#      deploy/certs/out, the folder the compose file mounts (removed at the end; the script refuses to run when
#      that folder already exists, so it never replaces a cluster's own keys);
#   1. image: size, non-root user, health check, no CA bundle and no apt settings of the build machine inside; the start-up lines of a container show the
#      OpenBLAS kernel and oneDNN convolutions on the image's own Fashion-MNIST; a mounted /data replaces it;
#   2. reference: deploy/local/cluster.sh 2 on this machine, same seed and the same OpenBLAS kernel settings;
#   3. compose, undisturbed: every node speaks akka.ssl.tcp and each worker's data plane is TLS with the other
#      end's certificate (both ends' logs); rogue worker containers started beside the job (the compose file's worker
#      service with a second CA's certificate, with another job's secret, with no secret) are refused, exit 2 and
#      never get a worker index; the final test accuracy equals the reference's; Prometheus's HTTP API returns
#      disttrain_training_samples_total for every node and data for every Grafana dashboard query; the health check passes;
#   4. compose, a worker container killed mid-epoch: the job pauses (Cluster:MinWorkers = 2), the container is
#      started again, and the job completes within 0.5 points of the undisturbed run;
#   5. compose, the ps container killed mid-epoch, right after its checkpoint within epoch 3 (every 200 steps): the standby
#      takes over from the newest checkpoint (time to resume recorded) and the job completes;
#   6. compose run 4, with the shard-nodes profile (DISTTRAIN_Cluster__ShardNodes=true DISTTRAIN_Cluster__ParameterServerShards=2
#      in the shell, 2 shard containers): the
#      parameter server places its 2 shards on the shard containers, the workers train against them over TLS, a checkpoint
#      is written at each epoch's end and every 200 steps within epochs from the shards' slices, every node exits 0, and the
#      test accuracy equals the undisturbed run's (the same weights, bit for bit, as one server's);
#   7. shard nodes again, 2 worker containers (WORKERS=2) and no standby, one worker killed mid-epoch and started again: the
#      shard nodes decide which of its slices count, the restarted worker joins as worker 2 in a worker slot placed with the
#      shards to spare, a further part of the epoch gives the lost worker's samples to it and the other, one checkpoint is
#      written per epoch, every node (the restarted one too) exits 0, and the test accuracy is within 1 point of the undisturbed run's;
#   8. shard nodes with the standby, the ps container killed mid-epoch, right after its first checkpoint within epoch 3
#      (every 200 steps): the shard containers release the lost server's shards, the standby takes over from that checkpoint
#      and places new shards on the same shard containers, every node but the killed one exits 0, and the test accuracy equals
#      the undisturbed run's (a resume is exact);
#   9. shard nodes without the standby, 3 shard containers for 2 shards, one of the two hosting a shard killed right after
#      the first checkpoint within epoch 3: the ps container starts the job again from that checkpoint on its own node,
#      placing the shards on the survivor and the spare, and every node but the killed one exits 0 with the test accuracy
#      of the undisturbed run.
# Containers, networks, volumes and the certificates are removed at the end, also when a check fails or the script
# is stopped.
#
# Engines: docker when its daemon answers, else podman (installed from Debian when missing). Where no registry is
# reachable, base images are stood in for, under the names the Dockerfile and the compose file use (podman only), by
# deploy/offline-base-images.sh: debian:bookworm-slim from an mmdebstrap root file system, the .NET SDK image from it
# plus this machine's SDK, and prom/prometheus from Debian's prometheus package. Run as root (podman) or as a user
# of a running docker. Takes 13 to 20 minutes here with base images present, on a loaded machine; deploy/README.md
# has more.
#
# Usage: tests/containers/run.sh
# Environment: ENGINE=docker|podman to choose; OUT=folder for logs (default runs/container-test);
#   NO_CACHE=1 builds the image without the build cache (the cold build time). With podman the build stage stays
#   tagged disttrain-build:latest, the cache of later runs (podman rmi disttrain-build:latest frees it).
# Exit codes: 0 every check passed; 1 a check failed; 77 no container engine can run here (nothing was checked).
set -uo pipefail
# Settings the compose file passes on from the caller's environment: runs 1 to 3 and the cluster.sh reference run without
# them (a shell that exported them for a shard-node job would otherwise make every run one); run 4 sets them itself.
unset DISTTRAIN_Cluster__ShardNodes DISTTRAIN_Cluster__ParameterServerShards DISTTRAIN_Cluster__StartDelaySeconds DISTTRAIN_Checkpoint__Resume CHECKPOINT_EVERY_STEPS
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"
out="$(mkdir -p "${OUT:-runs/container-test}" && cd "${OUT:-runs/container-test}" && pwd)"
if [ -n "$(ls -A "$out")" ] && [ ! -e "$out/.disttrain-container-test" ]; then
  echo "OUT=$out is not empty and was not written by this script: give an empty or new folder." >&2
  exit 1
fi
find "$out" -mindepth 1 -delete && touch "$out/.disttrain-container-test"
work="$(mktemp -d)"
project="disttrain-test-$$"
image=disttrain:latest
failures=()
service_pid=""
certs="$repo/deploy/certs/out"  # the folder deploy/docker-compose.yml mounts at /certs in every node
certs_made=""
rogues=()
script_start=$(date +%s)

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
check() { # check CONDITION-EXIT-CODE MESSAGE: records a failed check and goes on
  if [ "$1" -eq 0 ]; then log "ok: $2"; else log "FAILED: $2"; failures+=("$2"); fi
}
die() { log "FAILED: $*"; failures+=("$*"); exit 1; }
skip() { log "SKIPPED: $*"; exit 77; }
now() { date -u +%s.%N; }
seconds_between() { # "?" when either time is missing, not a difference from the epoch
  if [ -z "$1" ] || [ -z "$2" ]; then echo "?"; else awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; fi; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# ---------------------------------------------------------------------------------------------------------------
# Teardown: every container, network and volume of the compose project, the API service, the scratch folder.
teardown() {
  local status=$?
  trap - EXIT INT TERM
  if [ -n "${compose_cmd:-}" ]; then
    log "teardown: removing the compose project's containers, networks and volumes"
    "${compose[@]}" down -v --remove-orphans > "$out/teardown.log" 2>&1 || cat "$out/teardown.log"
  fi
  local rogue
  for rogue in "${rogues[@]}"; do "$engine" rm -f "$rogue" > /dev/null 2>&1; done
  [ -n "${engine:-}" ] && "$engine" ps -a --filter "name=^${project}" --format '{{.Names}}' 2>/dev/null | sed 's/^/teardown: left over: /'
  if [ -n "$certs_made" ]; then log "teardown: removing the test's certificates ($certs)"; rm -rf "$certs"; fi
  [ -n "$service_pid" ] && kill "$service_pid" 2>/dev/null && wait "$service_pid" 2>/dev/null
  rm -rf "$work"
  local elapsed=$(( $(date +%s) - script_start ))
  if [ "$status" -eq 77 ]; then
    log "skipped after ${elapsed} s"
  elif [ ${#failures[@]} -eq 0 ] && [ "$status" -eq 0 ]; then
    log "ALL CHECKS PASSED in ${elapsed} s (logs in $out)"
  else
    [ ${#failures[@]} -gt 0 ] || failures+=("the script stopped with status $status before its checks ended (see the lines above)")
    log "${#failures[@]} CHECK(S) FAILED in ${elapsed} s (logs in $out):"
    printf '  - %s\n' "${failures[@]}"
    status=1
  fi
  exit "$status"
}
trap teardown EXIT
trap 'log "interrupted"; failures+=("interrupted"); exit 1' INT TERM
[ ! -e "$certs" ] || die "deploy/certs/out exists (a cluster's own CA and keys?): this test makes its own CA there, where the compose file mounts it, and removes it at the end; move that folder away and run again"

# ---------------------------------------------------------------------------------------------------------------
log "== engine"
if [ -n "${ENGINE:-}" ]; then
  engine="$ENGINE"
elif command -v docker > /dev/null && timeout 20 docker info > /dev/null 2>&1; then
  engine=docker
else
  engine=podman
fi
if [ "$engine" = podman ] && ! command -v podman > /dev/null; then
  command -v apt-get > /dev/null || skip "no docker daemon answers, podman is not installed and there is no apt-get to install it"
  [ "$(id -u)" -eq 0 ] || sudo -n true 2> /dev/null || skip "no docker daemon answers and podman is not installed (installing it needs root)"
  bash deploy/local/apt-ensure.sh podman > "$out/install-podman.log" 2>&1 || skip "podman could not be installed from Debian: $(tail -3 "$out/install-podman.log")"
fi
"$engine" info > "$out/engine-info.log" 2>&1 || skip "$engine info failed: $(tail -3 "$out/engine-info.log")"
log "engine: $engine ($("$engine" --version))"

# Base images: the real ones when present or pullable, else stand-ins under the same names (podman only), made by
# deploy/offline-base-images.sh, the route deploy/README.md gives machines without registry access.
ENGINE="$engine" LOG_DIR="$out/base-images" bash deploy/offline-base-images.sh > "$out/base-images.log" 2>&1
base_status=$?
sed 's/^offline-base-images: \([^ ]*: \)/base image \1/' "$out/base-images.log" | while IFS= read -r line; do log "$line"; done
if [ $base_status -ne 0 ]; then
  "$engine" run --rm docker.io/library/debian:bookworm-slim true > "$work/probe.log" 2>&1 || skip "$engine cannot start a container here: $(tail -2 "$work/probe.log")"
  die "deploy/offline-base-images.sh failed: $(tail -2 "$out/base-images.log")"
fi
standins_built=$(sed -n 's/^offline-base-images: \(.*\): built (\(.*\))$/\1 (\2)/p' "$out/base-images.log" | paste -sd ';' -)
[ -z "$standins_built" ] || log "stand-ins built: $standins_built"
"$engine" run --rm docker.io/library/debian:bookworm-slim true > "$work/probe.log" 2>&1 || skip "$engine cannot start a container here: $(tail -2 "$work/probe.log")"
log "a container starts"

# ---------------------------------------------------------------------------------------------------------------
log "== image"
build_options=(--pull=never)
if [ "$engine" = podman ]; then
  build_options+=(--format docker) # OCI images drop HEALTHCHECK
  if [ "${NO_CACHE:-0}" = 1 ]; then
    # A cold build: earlier builds' layers go (untagged images), the base images stay.
    "$engine" rmi "$image" > /dev/null 2>&1
    "$engine" image prune -f > /dev/null 2>&1
  fi
elif [ "${NO_CACHE:-0}" = 1 ]; then
  build_options+=(--no-cache)
fi
: > "$out/build.log"
t0=$(now)
if [ "$engine" = podman ] && [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  # NuGet restore over HTTPS trusts this machine's CAs: the build stage alone is built with the bundle mounted
  # read-only; the full build then reuses its layers, so the runtime stage never sees the mount.
  nice -n 10 podman build "${build_options[@]}" --target build \
    --volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro -t disttrain-build:latest . >> "$out/build.log" 2>&1 \
    || die "the build stage failed: $(grep -E 'error|Error' "$out/build.log" | head -5)"
fi
nice -n 10 "$engine" build "${build_options[@]}" -t "$image" . >> "$out/build.log" 2>&1 || die "the image build failed: $(tail -5 "$out/build.log")"
build_seconds=$(seconds_between "$t0" "$(now)")
size_bytes=$("$engine" image inspect --format '{{.Size}}' "$image")
log "image $image built in ${build_seconds} s ($( [ "${NO_CACHE:-0}" = 1 ] && echo 'NO_CACHE=1: no layer cache' || echo 'reusing cached layers where their inputs are unchanged')); size $(( size_bytes / 1000000 )) MB ($size_bytes bytes)"

user=$("$engine" image inspect --format '{{.Config.User}}' "$image")
uid=$("$engine" run --rm --entrypoint id "$image" -u 2>/dev/null)
[ "$user" = app ] && [ "${uid:-0}" != 0 ]; check $? "the image runs as the non-root user '$user' (uid $uid)"
"$engine" image inspect --format '{{json .Config.Healthcheck}}' "$image" | grep -q disttrain-alive; check $? "the image has the health check"
"$engine" run --rm --entrypoint sh "$image" -c '! test -s /etc/ssl/certs/ca-certificates.crt' > /dev/null 2>&1
check $? "the image holds no CA bundle from the build machine"
# mmdebstrap writes the build machine's apt options (--aptopt: proxies, maybe credentials) into the root file system's
# /etc/apt/apt.conf.d/99mmdebstrap; offline-base-images.sh removes it, so neither the base nor the image may hold it.
"$engine" run --rm --entrypoint sh "$image" -c '! test -e /etc/apt/apt.conf.d/99mmdebstrap' > /dev/null 2>&1 \
  && "$engine" run --rm docker.io/library/debian:bookworm-slim sh -c '! test -e /etc/apt/apt.conf.d/99mmdebstrap' > /dev/null 2>&1
check $? "neither the image nor its debian:bookworm-slim base holds the build machine's apt settings (/etc/apt/apt.conf.d/99mmdebstrap)"

blas_env=()
for variable in OPENBLAS_CORETYPE OPENBLAS_L2_SIZE; do [ -n "${!variable:-}" ] && blas_env+=(-e "$variable"); done
"$engine" run --rm "${blas_env[@]}" "$image" train --config configs/fashion-mnist-cnn.json --epochs 1 --train-limit 512 --test-limit 256 \
  > "$out/image-cnn.log" 2>&1
cnn_status=$?
grep -E "^(DistTrain|BLAS|virtualized|Convolutions|Test accuracy)" "$out/image-cnn.log" | sed 's/^/  | /'
[ $cnn_status -eq 0 ] && grep -q "samples from /data" "$out/image-cnn.log"; check $? "a container trains on the image's own Fashion-MNIST (no mount)"
grep -qE "^BLAS: OpenBLAS .*kernel (SkylakeX|Haswell)" "$out/image-cnn.log"; check $? "its start-up lines show the SkylakeX or Haswell BLAS kernel"
grep -q "^Convolutions: oneDNN" "$out/image-cnn.log"; check $? "its start-up lines show oneDNN convolutions"
"$engine" run --rm -v "$repo/tests/data/fashion-mnist-subset:/data:ro" "$image" train --config configs/fashion-mnist-mlp.json --epochs 1 \
  > "$out/image-mounted-data.log" 2>&1
grep -q "1,000 training / 250 test samples from /data" "$out/image-mounted-data.log"; check $? "a mounted /data replaces the image's data (the 1,000-sample subset)"

# ---------------------------------------------------------------------------------------------------------------
log "== reference: deploy/local/cluster.sh 2 on this machine"
blas_settings="OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-(unset)} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE:-(unset)}"
log "OpenBLAS settings for both runs (compose passes them on): $blas_settings"
DISTTRAIN_Cluster__Port=$(free_port) DISTTRAIN_Cluster__DataPort=$(free_port) DISTTRAIN_Output__Directory="$work/host-runs" \
  bash deploy/local/cluster.sh 2 > "$out/host-cluster.log" 2>&1
host_status=$?
# cluster.sh names its run folder (logs, CA, keys) on its first line; its logs are kept here, the folder goes.
host_run=$(sed -n 's/^Job .* logs in \(\/.*\/runs\/cluster\/[^/]*\)\/logs\/\.$/\1/p' "$out/host-cluster.log" | head -1)
if [ -n "$host_run" ] && [ -d "$host_run/logs" ]; then
  cp -r "$host_run/logs" "$out/host-logs" && cp "$host_run/logs/worker-1.log" "$out/host-worker-1.log"
  rm -rf "$host_run"
fi
host_accuracy=$(sed -n 's/^Test accuracy after [0-9]* epochs: \([0-9.]*\)%.*/\1/p' "$out/host-cluster.log")
host_blas=$(grep -o "kernel [A-Za-z0-9]*, [0-9]* threads\? per call" "$out/host-worker-1.log" | head -1)
grep -E "test acc|Test accuracy" "$out/host-cluster.log" | sed 's/^/  | /'
[ $host_status -eq 0 ] && [ -n "$host_accuracy" ]; check $? "cluster.sh 2 finished: test accuracy ${host_accuracy:-?}%, workers' BLAS: ${host_blas:-?}"
grep -qE "Remoting (started|now listens).*\[akka\.ssl\.tcp://" "$out/host-worker-1.log" 2> /dev/null && grep -qE "data plane connected to .* \(TLS Tls1[23], " "$out/host-worker-1.log"
check $? "cluster.sh's nodes speak mutual TLS too (akka.ssl.tcp; $(grep -oE "data plane connected to .*" "$out/host-worker-1.log" 2> /dev/null | head -1))"

# ---------------------------------------------------------------------------------------------------------------
log "== certificates: deploy/certs/make-certs.sh, as deploy/README.md says"
# The cluster's own CA, the three nodes' certificates and the job secret, in the folder the compose file mounts;
# the image's user app (uid 1654) must read the keys (KEY_UID). A second CA, with its own secret, for the rogues.
certs_made=1
KEY_UID=1654 bash deploy/certs/make-certs.sh "$certs" ps ps-standby worker shard > "$out/make-certs.log" 2>&1 \
  || die "make-certs.sh failed: $(tail -3 "$out/make-certs.log")"
KEY_UID=1654 bash deploy/certs/make-certs.sh "$work/other-ca" worker >> "$out/make-certs.log" 2>&1 \
  || die "make-certs.sh (the second CA) failed: $(tail -3 "$out/make-certs.log")"
log "cluster CA: $(openssl x509 -in "$certs/ca.crt" -noout -subject | sed 's/^subject=//'); node certificates: $(cd "$certs" && ls *.crt | grep -v '^ca' | tr '\n' ' ')"
log "second CA (rogue nodes): $(openssl x509 -in "$work/other-ca/ca.crt" -noout -subject | sed 's/^subject=//')"

# ---------------------------------------------------------------------------------------------------------------
log "== compose client"
if [ "$engine" = docker ] && docker compose version > /dev/null 2>&1; then
  compose_cmd="docker compose"
else
  command -v docker-compose > /dev/null || bash deploy/local/apt-ensure.sh docker-compose > "$out/install-compose.log" 2>&1 \
    || die "docker-compose could not be installed from Debian"
  compose_cmd="docker-compose"
  if [ "$engine" = podman ]; then
    # Debian's docker-compose speaks the Docker API: podman serves it on a socket of this run's own.
    podman system service --time=0 "unix://$work/podman.sock" > "$out/podman-service.log" 2>&1 &
    service_pid=$!
    for _ in $(seq 1 50); do [ -S "$work/podman.sock" ] && break; sleep 0.2; done
    export DOCKER_HOST="unix://$work/podman.sock"
  fi
fi
# With the shard-nodes profile throughout, so that ps, down and logs see the shard containers of run 4; runs 1 to 3 name
# the services they start, which leaves the profile's out.
compose=($compose_cmd -p "$project" -f deploy/docker-compose.yml --profile shard-nodes)
export WORKERS=2
log "compose client: $compose_cmd ($($compose_cmd version 2>/dev/null | head -1)), project $project"
if ss -ltn 2> /dev/null | grep -q ':9090 '; then die "port 9090, which the compose file publishes for Prometheus, is taken on this machine"; fi

ids() { "${compose[@]}" ps -a -q "$1" 2> /dev/null; }
logs_of() { "$engine" logs "$1" 2>&1; }
# log_has CONTAINER PATTERN: 0 when the container's log has a line matching PATTERN. grep reads the whole log (no -q):
# with pipefail, a grep -q that stops at its first match makes the log writer die of SIGPIPE and the pipe fail.
log_has() { logs_of "$1" | grep -E -- "$2" > /dev/null; }
wait_for_log() { # wait_for_log CONTAINER PATTERN SECONDS: 0 once the container's log has a line matching PATTERN;
  # seen_at is then the time it was seen (the log is read every 0.3 s, plus the time podman takes to return it)
  local deadline=$(( $(date +%s) + $3 ))
  seen_at=""
  while [ "$(date +%s)" -lt "$deadline" ]; do
    log_has "$1" "$2" && { seen_at=$(now); return 0; }
    sleep 0.3
  done
  return 1
}
log_time() { # log_time CONTAINER PATTERN: the Akka timestamp of the first matching line, as seconds since the epoch;
  # for a plain line (progress lines carry no timestamp), the time the last wait_for_log saw it
  local stamp
  stamp=$(logs_of "$1" | grep -E -- "$2" | head -1 | sed -n 's/.*\]\[\([0-9]*\/[0-9]*\/[0-9]* [0-9:.]*\)Z\].*/\1/p')
  # a stamp that date cannot read falls back to the time seen, as a missing one does
  if [ -n "$stamp" ] && date -u -d "$stamp" +%s.%N 2> /dev/null; then return 0; fi
  echo "${seen_at:-}"
}
exit_code() { timeout "${2:-900}" "$engine" wait "$1" 2> /dev/null | tail -1; }
accuracy_of() { logs_of "$1" | sed -n 's/^Test accuracy after [0-9]* epochs: \([0-9.]*\)%.*/\1/p' | tail -1; }
save_logs() { # save_logs RUN: every container's log of the project into OUT/RUN/
  mkdir -p "$out/$1"
  local service id n
  for service in ps ps-standby worker shard prometheus; do
    n=0
    for id in $(ids "$service"); do n=$((n + 1)); logs_of "$id" > "$out/$1/$service-$n.log"; done
  done
}
within() { awk -v a="$1" -v b="$2" -v d="$3" 'BEGIN { x = a - b; if (x < 0) x = -x; exit !(x <= d + 1e-9) }'; }
up() { # up [COMMAND]: compose up, then COMMAND (while the nodes start), then wait for training to start
  "${compose[@]}" up -d --no-build --scale worker=2 ps ps-standby worker prometheus > "$work/up.log" 2>&1 \
    || die "compose up failed: $(tail -5 "$work/up.log")"
  ps_id=$(ids ps); standby_id=$(ids ps-standby); worker_ids=($(ids worker))
  [ ${#worker_ids[@]} -eq 2 ] || die "compose started ${#worker_ids[@]} worker containers, expected 2"
  [ -z "${1:-}" ] || "$1"
  wait_for_log "$ps_id" "Training starts with 2 workers" 480 || die "training did not start within 480 s: $(logs_of "$ps_id" | tail -5)"
}
down() { "${compose[@]}" down -v > "$work/down.log" 2>&1 || log "compose down: $(tail -3 "$work/down.log")"; }
summary_lines() { logs_of "$1" | grep -E "^(BLAS|epoch +[0-9]+/[0-9]+ +train|Test accuracy)" | sed 's/^/  | /'; }
# Rogue nodes: containers like the compose file's worker containers (the image, the environment compose gave the
# first worker, its command, the project's network and the /certs mount) with some settings changed, started while
# the job's own nodes start (docs/security.md's rogue-node test, on images). The second CA's folder is mounted at
# /rogue. (`compose run` cannot make them under podman: its one-off containers carry links, which podman refuses.)
# The compose file's worker mounts: the cluster's CA certificate, the worker's certificate and key, the job secret.
worker_mounts=()
for file in ca.crt worker.crt worker.key job-secret; do worker_mounts+=(-v "$certs/$file:/certs/$file:ro"); done
rogue() { # rogue NAME KEY=VALUE...
  local name="${project}-rogue-$1" setting settings=() changed=(); shift
  for setting in "$@"; do settings+=(-e "$setting"); changed+=(-e "^${setting%%=*}="); done
  "$engine" inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "${worker_ids[0]}" | grep -E '^(DISTTRAIN_|WORKERS_PER_MACHINE=|OPENBLAS_)' \
    | grep -v "${changed[@]}" > "$work/rogue.env"
  local command; command=$("$engine" inspect -f '{{range .Config.Cmd}}{{.}} {{end}}' "${worker_ids[0]}")
  # shellcheck disable=SC2086 # the worker's command: words without spaces (node --role worker --config FILE)
  if "$engine" run -d --name "$name" --network "${project}_default" --env-file "$work/rogue.env" "${settings[@]}" \
      "${worker_mounts[@]}" -v "$work/other-ca:/rogue:ro" "$image" $command > "$work/rogue.log" 2>&1; then
    rogues+=("$name")
  else
    log "could not start the rogue container $name: $(tail -2 "$work/rogue.log")"
  fi
}
start_rogues() {
  # A whole other job: the second CA's certificate and key, and its own secret.
  rogue other-ca DISTTRAIN_Cluster__CertificateAuthorityFile=/rogue/ca.crt DISTTRAIN_Cluster__CertificateFile=/rogue/worker.crt \
    DISTTRAIN_Cluster__CertificateKeyFile=/rogue/worker.key DISTTRAIN_Cluster__SecretFile=/rogue/job-secret
  # The cluster's CA and worker certificate, but not the job's secret: another job's, or none.
  rogue other-secret DISTTRAIN_Cluster__SecretFile=/rogue/job-secret
  rogue no-secret DISTTRAIN_Cluster__SecretFile=
}

# ---------------------------------------------------------------------------------------------------------------
log "== compose run 1: undisturbed, with rogue nodes"
t0=$(now)
up start_rogues
log "training started $(seconds_between "$t0" "$(now)") s after compose up"
if [ "$engine" = podman ]; then # podman runs health checks from systemd timers; without systemd, on demand
  sleep 6; podman healthcheck run "$ps_id" > "$work/health.log" 2>&1; health=$?
else
  for _ in $(seq 1 40); do [ "$(docker inspect -f '{{.State.Health.Status}}' "$ps_id")" = healthy ] && break; sleep 1; done
  [ "$(docker inspect -f '{{.State.Health.Status}}' "$ps_id")" = healthy ]; health=$?
fi
check $health "the health check passes on the training parameter server"
wait_for_log "$ps_id" "^epoch +3/10 " 300 || die "epoch 3 did not start"
python3 tests/containers/prometheus_check.py --url http://127.0.0.1:9090 --dashboard deploy/grafana/dashboards/disttrain.json --targets 4 --timeout 60 \
  > "$out/prometheus-check.log" 2>&1
prometheus_status=$?
sed 's/^/  | /' "$out/prometheus-check.log"
check $prometheus_status "Prometheus scrapes all 4 nodes, returns disttrain_training_samples_total for each, and every dashboard query returns data"
ps_status=$(exit_code "$ps_id"); standby_status=$(exit_code "$standby_id" 60)
worker_statuses="$(exit_code "${worker_ids[0]}" 60) $(exit_code "${worker_ids[1]}" 60)"
undisturbed_seconds=$(seconds_between "$t0" "$(now)")

# Mutual TLS, from the nodes' own logs: Akka.Remote listens on akka.ssl.tcp on every node, and each worker's data
# plane is TLS on both ends, each end naming the certificate the other presented.
tls_ok=0
for id in "$ps_id" "$standby_id" "${worker_ids[@]}"; do
  log_has "$id" "Remoting (started|now listens).*\[akka\.ssl\.tcp://disttrain@" || { tls_ok=1; log "no akka.ssl.tcp address in $id's log"; }
  ! log_has "$id" "akka\.tcp://disttrain@[^ ]*:[0-9]+\]" || { tls_ok=1; log "an akka.tcp address in $id's log"; }
done
logs_of "$ps_id" | grep -E "Remoting (started|now listens)" | head -1 | sed 's/^.*\] //; s/^/  | /'
check $tls_ok "every node speaks akka.ssl.tcp (Akka.Remote over mutual TLS), none akka.tcp"
data_tls_ok=0
for index in 0 1; do
  log_has "$ps_id" "Data plane: worker $index connected from .* \(TLS Tls1[23], TLS_[A-Z0-9_]+, peer 'CN=worker'\)" || data_tls_ok=1
done
for id in "${worker_ids[@]}"; do
  log_has "$id" "data plane connected to ps:4054 \(TLS Tls1[23], TLS_[A-Z0-9_]+, peer 'CN=ps'\)" || data_tls_ok=1
done
{ logs_of "$ps_id" | grep -E "Data plane: worker [0-9]+ connected"; logs_of "${worker_ids[0]}" | grep -E "data plane connected"; } | sed 's/^.*\] //; s/^/  | /'
check $data_tls_ok "both workers' data planes are TLS on both ends (the ps sees CN=worker, each worker sees CN=ps)"

# The rogues: each exits 2 with its refusal; the parameter server logs the refusals and gives worker indices only to
# the job's own two workers.
mkdir -p "$out/undisturbed"
rogue_check() { # rogue_check NAME LINE: the rogue exited 2 and its log has LINE
  local name="${project}-rogue-$1" status
  status=$(exit_code "$name" 300)
  logs_of "$name" > "$out/undisturbed/rogue-$1.log"
  grep -E "refused|error" "$out/undisturbed/rogue-$1.log" | head -1 | cut -c1-250 | sed 's/^/  | /'
  [ "$status" = 2 ] && grep -qF -- "$2" "$out/undisturbed/rogue-$1.log"
  check $? "rogue node '$1' is refused: exit ${status:-?} (2 expected), its log says '$2'"
}
[ ${#rogues[@]} -eq 3 ]; check $? "3 rogue containers started beside the job (${#rogues[@]} did)"
rogue_check other-ca "do not trust each other's certificates"
rogue_check other-secret "refused this worker: its job secret differs from the secret of job"
rogue_check no-secret "cluster mode needs the job's shared secret"
log_has "$ps_id" "Akka.Remote: refused a TLS connection with .* is not signed by this cluster's CA"
check $? "the parameter server refused the other CA's certificate: $(logs_of "$ps_id" | grep -oE "refused a TLS connection with .*" | head -1 | cut -c1-200)"
log_has "$ps_id" "Refused worker node .*its job secret differs"
check $? "the parameter server refused the node with another job's secret: $(logs_of "$ps_id" | grep -oE "Refused worker node [^:]*" | head -1)"
joins=$(logs_of "$ps_id" | grep -cE "joins as worker [0-9]+")
# Each rogue's own address, from its Remoting line (the rogue with the cluster's CA also logs the members it met).
rogue_addresses=$(cat "$out"/undisturbed/rogue-*.log | grep -E "Remoting started" | grep -oE "akka\.ssl\.tcp://disttrain@[0-9.]+:[0-9]+" | sort -u)
rogue_joined=0
for address in $rogue_addresses; do log_has "$ps_id" "Worker node ${address//./\\.} joins as worker" && rogue_joined=1; done
[ "$joins" -eq 2 ] && [ "$rogue_joined" -eq 0 ] && ! log_has "$ps_id" "joins as worker [2-9]"
check $? "only the job's own 2 workers got a worker index ($joins 'joins as worker' lines; rogue addresses: $(echo $rogue_addresses))"
for rogue in "${rogues[@]}"; do "$engine" rm -f "$rogue" > /dev/null 2>&1; done
rogues=()
save_logs undisturbed
summary_lines "$ps_id"
container_accuracy=$(accuracy_of "$ps_id")
container_blas=$(logs_of "${worker_ids[0]}" | grep -o "kernel [A-Za-z0-9]*, [0-9]* threads\? per call" | head -1)
[ "$ps_status" = 0 ] && [ "$standby_status" = 0 ] && [ "$worker_statuses" = "0 0" ]
check $? "every node exited 0 (ps $ps_status, ps-standby $standby_status, workers $worker_statuses); ${undisturbed_seconds} s from compose up"
[ "$container_blas" = "$host_blas" ]; check $? "the worker containers run the reference's kernel and threads ($container_blas; cluster.sh: $host_blas)"
[ -n "$container_accuracy" ] && [ "$container_accuracy" = "$host_accuracy" ]
check $? "the compose job's test accuracy equals cluster.sh 2's: ${container_accuracy:-?}% and ${host_accuracy:-?}%"
down

# ---------------------------------------------------------------------------------------------------------------
log "== compose run 2: a worker container killed mid-epoch"
up
wait_for_log "$ps_id" "^epoch +3/10 +50%" 300 || die "epoch 3 did not reach 50%"
victim=${worker_ids[1]}
t_kill=$(now)
"$engine" kill "$victim" > /dev/null
log "killed worker container $("$engine" inspect -f '{{.Name}}' "$victim" | tr -d /) at epoch 3, 50%"
wait_for_log "$ps_id" "is lost" 60; check $? "the parameter server sees the worker lost"
t_lost=$(log_time "$ps_id" "is lost")
logs_of "$ps_id" | grep -E "is lost" | sed 's/^.*\] //; s/^/  | /'
if wait_for_log "$ps_id" "Training is paused" 120; then
  t_paused=$(log_time "$ps_id" "Training is paused")
  log "the job paused $(seconds_between "$t_kill" "$t_paused") s after the kill (1 of Cluster:MinWorkers = 2 workers); starting the worker container again"
else
  log "the job did not pause within 120 s; starting the worker container again"
fi
t_restart=$(now)
"${compose[@]}" start worker > "$work/start.log" 2>&1; check $? "compose start worker brings the killed container back"
wait_for_log "$ps_id" "Training resumes" 180; check $? "training resumes with 2 workers"
t_resumed=$(log_time "$ps_id" "Training resumes")
ps_status=$(exit_code "$ps_id"); survivor_status=$(exit_code "${worker_ids[0]}" 60); victim_status=$(exit_code "$victim" 60)
save_logs worker-killed
summary_lines "$ps_id"
killed_accuracy=$(accuracy_of "$ps_id")
log "kill -> lost: $(seconds_between "$t_kill" "${t_lost:-}") s; kill -> paused: $(seconds_between "$t_kill" "${t_paused:-}") s; worker started again -> training resumed: $(seconds_between "$t_restart" "${t_resumed:-}") s"
[ "$ps_status" = 0 ] && [ "$survivor_status" = 0 ] && [ "$victim_status" = 0 ]
check $? "the job completed (ps $ps_status, surviving worker $survivor_status, restarted worker $victim_status)"
[ -n "$killed_accuracy" ] && within "$killed_accuracy" "${container_accuracy:-0}" 0.5
check $? "test accuracy with a worker killed: ${killed_accuracy:-?}%, within 0.5 points of the undisturbed ${container_accuracy:-?}%"
down

# ---------------------------------------------------------------------------------------------------------------
log "== compose run 3: the ps container killed mid-epoch"
up
# Killed right after the first checkpoint within epoch 3 (Checkpoint:EverySteps 200 counts weights versions across the run:
# version 1000, round 62 of 469), a log line the script sees within a second, unlike the progress lines, which it saw late
# enough at times that a kill meant for epoch 3 landed in epoch 4.
wait_for_log "$ps_id" "^checkpoint [^ ]*: version [0-9]+, next epoch 3 round [1-9]" 300 || die "no checkpoint within epoch 3"
newest_checkpoint=$(logs_of "$ps_id" | grep -oE "^checkpoint [^ ]*: version [0-9]+, next epoch [0-9]+ round [0-9]+" | tail -1 | sed 's/^checkpoint [^ ]*: //')
t_kill=$(now)
"$engine" kill "$ps_id" > /dev/null
log "killed the ps container after its checkpoint within epoch 3 (its newest checkpoint: ${newest_checkpoint:-none})"
wait_for_log "$standby_id" "Taking over the job" 120; check $? "the standby takes over the job"
t_takeover=$(log_time "$standby_id" "Taking over the job")
wait_for_log "$standby_id" "Training starts" 120; check $? "the standby starts training"
t_resumed=$(log_time "$standby_id" "Training starts")
logs_of "$standby_id" | grep -E "Taking over|Resuming from|Training starts" | sed 's/^.*\] //; s/^/  | /'
standby_status=$(exit_code "$standby_id"); worker_statuses="$(exit_code "${worker_ids[0]}" 60) $(exit_code "${worker_ids[1]}" 60)"
ps_status=$(exit_code "$ps_id" 10)
save_logs ps-killed
summary_lines "$standby_id"
failover_accuracy=$(accuracy_of "$standby_id")
log "kill -> standby's job host: $(seconds_between "$t_kill" "${t_takeover:-}") s; kill -> training resumed: $(seconds_between "$t_kill" "${t_resumed:-}") s"
[ "$standby_status" = 0 ] && [ "$worker_statuses" = "0 0" ]
check $? "the job completed on the standby (standby $standby_status, workers $worker_statuses; killed ps $ps_status)"
[ -n "$failover_accuracy" ] && within "$failover_accuracy" "${container_accuracy:-0}" 0.5
check $? "test accuracy after the takeover: ${failover_accuracy:-?}% (undisturbed ${container_accuracy:-?}%)"
down

# ---------------------------------------------------------------------------------------------------------------
log "== compose run 4: the shard-nodes profile, 2 shard containers (DISTTRAIN_Cluster__ShardNodes=true DISTTRAIN_Cluster__ParameterServerShards=2)"
t0=$(now)
DISTTRAIN_Cluster__ShardNodes=true DISTTRAIN_Cluster__ParameterServerShards=2 "${compose[@]}" up -d --no-build --scale worker=2 --scale shard=2 \
  ps ps-standby worker shard > "$work/up.log" 2>&1 || die "compose up (shard nodes) failed: $(tail -5 "$work/up.log")"
ps_id=$(ids ps); standby_id=$(ids ps-standby); worker_ids=($(ids worker)); shard_ids=($(ids shard))
[ ${#worker_ids[@]} -eq 2 ] && [ ${#shard_ids[@]} -eq 2 ] || die "compose started ${#worker_ids[@]} worker and ${#shard_ids[@]} shard containers, expected 2 and 2"
wait_for_log "$ps_id" "Training starts with 2 workers" 480 || die "training did not start within 480 s: $(logs_of "$ps_id" | tail -5)"
wait_for_log "$ps_id" "Parameter server: 2 shards placed on " 120
check $? "the parameter server placed its 2 shards on the shard containers: $(logs_of "$ps_id" | grep -oE "Parameter server: 2 shards placed on .*" | head -1 | cut -c1-220)"
ps_status=$(exit_code "$ps_id"); standby_status=$(exit_code "$standby_id" 60)
worker_statuses="$(exit_code "${worker_ids[0]}" 60) $(exit_code "${worker_ids[1]}" 60)"
shard_statuses="$(exit_code "${shard_ids[0]}" 60) $(exit_code "${shard_ids[1]}" 60)"
shards_seconds=$(seconds_between "$t0" "$(now)")
save_logs shard-nodes
summary_lines "$ps_id"
shards_accuracy=$(accuracy_of "$ps_id")
log_has "$ps_id" "parameter server in 2 shards of .* each on a shard node of its own \(Cluster:ShardNodes\)"
check $? "the parameter server's start-up line says where its shards run"
trains_ok=0
for id in "${worker_ids[@]}"; do log_has "$id" "trains against 2 shard nodes: " || trains_ok=1; done
logs_of "${worker_ids[0]}" | grep -oE "Worker [0-9]+ trains against 2 shard nodes: .*" | head -1 | sed 's/^/  | /'
check $trains_ok "both workers train against the 2 shard nodes"
gathered=$(logs_of "$ps_id" | grep -cE "end gathered from the shard nodes for its checkpoint")
logs_of "$ps_id" | grep -oE "epoch [0-9]+'s end gathered from the shard nodes for its checkpoint in [0-9.]+ ms" | tail -1 | sed 's/^/  | /'
[ "$gathered" -eq 10 ] && log_has "$ps_id" "^checkpoint [^ ]*: version [0-9]+, next epoch 11 round 0"
check $? "a checkpoint at each of the 10 epochs' ends, gathered from the shard nodes ($gathered gathered; the last starts epoch 11)"
within_epochs=$(logs_of "$ps_id" | grep -cE "^checkpoint [^ ]*: version [0-9]+, next epoch [0-9]+ round [1-9]")
[ "$within_epochs" -gt 0 ]
check $? "checkpoints within epochs (Checkpoint:EverySteps 200), put together from the shards' slices: $within_epochs"
[ "$ps_status" = 0 ] && [ "$standby_status" = 0 ] && [ "$worker_statuses" = "0 0" ] && [ "$shard_statuses" = "0 0" ]
check $? "every node exited 0 (ps $ps_status, ps-standby $standby_status, workers $worker_statuses, shard nodes $shard_statuses); ${shards_seconds} s from compose up"
[ -n "$shards_accuracy" ] && [ "$shards_accuracy" = "${container_accuracy:-}" ]
check $? "the test accuracy on shard nodes equals the undisturbed run's: ${shards_accuracy:-?}% and ${container_accuracy:-?}%"
down

# ---------------------------------------------------------------------------------------------------------------
log "== compose run 5: shard nodes, a worker container killed mid-epoch and started again (2 workers, WORKERS=2)"
t0=$(now)
WORKERS=2 DISTTRAIN_Cluster__ShardNodes=true DISTTRAIN_Cluster__ParameterServerShards=2 CHECKPOINT_EVERY_STEPS=0 \
  "${compose[@]}" up -d --no-build --scale worker=2 --scale shard=2 ps worker shard > "$work/up.log" 2>&1 \
  || die "compose up (shard nodes, a worker to restart) failed: $(tail -5 "$work/up.log")"
ps_id=$(ids ps); worker_ids=($(ids worker)); shard_ids=($(ids shard))
[ ${#worker_ids[@]} -eq 2 ] && [ ${#shard_ids[@]} -eq 2 ] || die "compose started ${#worker_ids[@]} worker and ${#shard_ids[@]} shard containers, expected 2 and 2"
wait_for_log "$ps_id" "Training starts with 2 workers" 480 || die "training did not start with 2 workers within 480 s: $(logs_of "$ps_id" | grep -E "Training starts|joins as" | tail -5)"
wait_for_log "$ps_id" "^epoch +3/10 +50%" 300 || die "epoch 3 did not reach 50%"
victim=${worker_ids[0]}
t_kill=$(now)
"$engine" kill "$victim" > /dev/null
log "killed worker container $("$engine" inspect -f '{{.Name}}' "$victim" | tr -d /) once epoch 3 showed 50%"
wait_for_log "$ps_id" "Worker [0-9]+ lost in epoch [0-9]+ round [0-9]+: " 120
check $? "the parameter server and both shard nodes decided which of the lost worker's slices count"
logs_of "$ps_id" | grep -oE "Worker [0-9]+ lost in epoch [0-9]+ round [0-9]+: .*" | head -1 | cut -c1-200 | sed 's/^/  | /'
log_has "$ps_id" "worker slots? still free for a worker that joins"
check $? "the loss left fewer than WORKERS, with worker slots free for a worker to join: $(logs_of "$ps_id" | grep -oE "Parameter server: worker [0-9]+ was lost, leaving .*" | head -1 | cut -c1-200)"
t_restart=$(now)
"$engine" start "$victim" > "$work/start.log" 2>&1; check $? "the killed worker container starts again"
wait_for_log "$ps_id" "joins as worker 2" 180; check $? "the restarted worker joins the running job as worker 2"
t_joined=$(log_time "$ps_id" "joins as worker 2")
wait_for_log "$ps_id" "Parameter server: worker 2 joined; it is given the shard nodes" 180
check $? "the parameter server gives it the shard nodes, for a spare slot"
wait_for_log "$ps_id" "Epoch [0-9]+: the [0-9,]+ samples? (left untrained when a worker was lost|lost workers had left) go(es)? to 2 workers" 120
check $? "a further part of that epoch gives its samples to the 2 workers alive, the restarted one among them"
logs_of "$ps_id" | grep -oE "Epoch [0-9]+: the [0-9,]+ samples? .* to 2 workers.*" | head -1 | sed 's/^/  | /'
ps_status=$(exit_code "$ps_id")
worker_statuses="$(exit_code "${worker_ids[1]}" 60) $(exit_code "$victim" 60)"
shard_statuses="$(exit_code "${shard_ids[0]}" 60) $(exit_code "${shard_ids[1]}" 60)"
save_logs shard-nodes-worker-restarted
summary_lines "$ps_id"
shards_killed_accuracy=$(accuracy_of "$ps_id")
log "kill -> started again: $(seconds_between "$t_kill" "$t_restart") s; started again -> joined: $(seconds_between "$t_restart" "${t_joined:-}") s"
log_has "$victim" "Worker 2 trains against 2 shard nodes: "
check $? "the restarted worker trains against the 2 shard nodes"
gathered=$(logs_of "$ps_id" | grep -cE "end gathered from the shard nodes for its checkpoint")
[ "$gathered" -eq 10 ]
check $? "one checkpoint per epoch, the killed one's at the end of its last part ($gathered gathered for 10 epochs)"
[ "$ps_status" = 0 ] && [ "$worker_statuses" = "0 0" ] && [ "$shard_statuses" = "0 0" ]
check $? "every node exited 0, the restarted worker too (ps $ps_status, workers $worker_statuses, shard nodes $shard_statuses); $(seconds_between "$t0" "$(now)") s from compose up"
[ -n "$shards_killed_accuracy" ] && within "$shards_killed_accuracy" "${container_accuracy:-0}" 1.0
check $? "test accuracy on shard nodes with a worker killed and restarted: ${shards_killed_accuracy:-?}%, within 1 point of the undisturbed ${container_accuracy:-?}%"
down

# ---------------------------------------------------------------------------------------------------------------
log "== compose run 6: shard nodes with the standby, the ps container killed mid-epoch"
t0=$(now)
DISTTRAIN_Cluster__ShardNodes=true DISTTRAIN_Cluster__ParameterServerShards=2 "${compose[@]}" up -d --no-build --scale worker=2 --scale shard=2 \
  ps ps-standby worker shard > "$work/up.log" 2>&1 || die "compose up (shard nodes, standby) failed: $(tail -5 "$work/up.log")"
ps_id=$(ids ps); standby_id=$(ids ps-standby); worker_ids=($(ids worker)); shard_ids=($(ids shard))
[ ${#worker_ids[@]} -eq 2 ] && [ ${#shard_ids[@]} -eq 2 ] || die "compose started ${#worker_ids[@]} worker and ${#shard_ids[@]} shard containers, expected 2 and 2"
wait_for_log "$ps_id" "Training starts with 2 workers" 480 || die "training did not start within 480 s: $(logs_of "$ps_id" | tail -5)"
# As in run 3, killed right after the first checkpoint within epoch 3: the standby resumes within the epoch.
wait_for_log "$ps_id" "^checkpoint [^ ]*: version [0-9]+, next epoch 3 round [1-9]" 300 || die "no checkpoint within epoch 3"
newest_checkpoint=$(logs_of "$ps_id" | grep -oE "^checkpoint [^ ]*: version [0-9]+, next epoch [0-9]+ round [0-9]+" | tail -1 | sed 's/^checkpoint [^ ]*: //')
t_kill=$(now)
"$engine" kill "$ps_id" > /dev/null
log "killed the ps container after its checkpoint within epoch 3 (its newest checkpoint: ${newest_checkpoint:-none})"
wait_for_log "$standby_id" "Taking over the job" 120; check $? "the standby takes over the job on shard nodes"
t_takeover=$(log_time "$standby_id" "Taking over the job")
wait_for_log "$standby_id" "Parameter server: 2 shards placed on " 180
check $? "the standby placed new shards on the shard containers"
wait_for_log "$standby_id" "Training starts" 120
t_resumed=$(log_time "$standby_id" "Training starts")
logs_of "$standby_id" | grep -E "Taking over|Resuming from|the shards start from|Training starts" | sed 's/^.*\] //; s/^/  | /' | cut -c1-220
standby_status=$(exit_code "$standby_id"); worker_statuses="$(exit_code "${worker_ids[0]}" 60) $(exit_code "${worker_ids[1]}" 60)"
shard_statuses="$(exit_code "${shard_ids[0]}" 60) $(exit_code "${shard_ids[1]}" 60)"
ps_status=$(exit_code "$ps_id" 10)
save_logs shard-nodes-ps-killed
summary_lines "$standby_id"
shards_failover_accuracy=$(accuracy_of "$standby_id")
log "kill -> standby's job host: $(seconds_between "$t_kill" "${t_takeover:-}") s; kill -> training resumed: $(seconds_between "$t_kill" "${t_resumed:-}") s"
released=0
for id in "${shard_ids[@]}"; do
  logs_of "$id" | awk '/Shard host: the owner of shard .* is gone/ { gone = 1 } gone && /resumes from the checkpoint.s slice/ { ok = 1 } END { exit !ok }' \
    || released=1
done
check $released "each shard container released the lost server's shard, then took the standby's from the checkpoint's slice"
resumed_at=$(logs_of "$standby_id" | grep -oE "Resuming from checkpoint [^ ]*: weights version [0-9]+, epoch [0-9]+ round [0-9]+" | head -1 | sed 's/^.*: //')
[[ "$resumed_at" =~ round\ [1-9] ]]
check $? "the standby resumed from a checkpoint within an epoch, put together from the shard nodes' slices: ${resumed_at:-none}"
[ "$standby_status" = 0 ] && [ "$worker_statuses" = "0 0" ] && [ "$shard_statuses" = "0 0" ]
check $? "the job completed on the standby (standby $standby_status, workers $worker_statuses, shard nodes $shard_statuses; killed ps $ps_status); $(seconds_between "$t0" "$(now)") s from compose up"
[ -n "$shards_failover_accuracy" ] && [ "$shards_failover_accuracy" = "${container_accuracy:-}" ]
check $? "test accuracy after the takeover on shard nodes equals the undisturbed run's: ${shards_failover_accuracy:-?}% and ${container_accuracy:-?}%"
down

# ---------------------------------------------------------------------------------------------------------------
log "== compose run 7: shard nodes without the standby, 3 shard containers for 2 shards, a hosting one killed mid-epoch"
t0=$(now)
DISTTRAIN_Cluster__ShardNodes=true DISTTRAIN_Cluster__ParameterServerShards=2 "${compose[@]}" up -d --no-build --scale worker=2 --scale shard=3 \
  ps worker shard > "$work/up.log" 2>&1 || die "compose up (shard nodes, a spare) failed: $(tail -5 "$work/up.log")"
ps_id=$(ids ps); worker_ids=($(ids worker)); shard_ids=($(ids shard))
[ ${#worker_ids[@]} -eq 2 ] && [ ${#shard_ids[@]} -eq 3 ] || die "compose started ${#worker_ids[@]} worker and ${#shard_ids[@]} shard containers, expected 2 and 3"
wait_for_log "$ps_id" "Training starts with 2 workers" 480 || die "training did not start within 480 s: $(logs_of "$ps_id" | tail -5)"
wait_for_log "$ps_id" "^checkpoint [^ ]*: version [0-9]+, next epoch 3 round [1-9]" 300 || die "no checkpoint within epoch 3"
hosting=(); spare=""
for id in "${shard_ids[@]}"; do if log_has "$id" "Shard host: hosting shard"; then hosting+=("$id"); else spare=$id; fi; done
[ ${#hosting[@]} -eq 2 ] && [ -n "$spare" ] || die "expected 2 shard containers hosting a shard and 1 spare, found ${#hosting[@]} hosting"
victim=${hosting[1]}
t_kill=$(now)
"$engine" kill "$victim" > /dev/null
log "killed shard container $("$engine" inspect -f '{{.Name}}' "$victim" | tr -d /) after the checkpoint within epoch 3"
wait_for_log "$ps_id" "The job starts again on this node from the newest checkpoint" 120
check $? "the parameter server starts the job again on its own node from the newest checkpoint"
restart_line=$(logs_of "$ps_id" | grep -oE "The job starts again on this node from the newest checkpoint \(of [^)]*\)" | head -1)
echo "  | $restart_line"
[[ "$restart_line" =~ \(of\ epoch\ 3\ round\ [1-9] ]]
check $? "it restarts from the checkpoint within epoch 3"
ps_status=$(exit_code "$ps_id"); worker_statuses="$(exit_code "${worker_ids[0]}" 60) $(exit_code "${worker_ids[1]}" 60)"
shard_statuses="$(exit_code "${hosting[0]}" 60) $(exit_code "$spare" 60)"
# The restarted run's start: the first "Training starts" line after the restart's, once the job has ended.
t_resumed=$(logs_of "$ps_id" | sed -n '/The job starts again on this node/,$p' | grep -E "Training starts" | head -1 | sed -n 's/.*\]\[\([0-9]*\/[0-9]*\/[0-9]* [0-9:.]*\)Z\].*/\1/p')
t_resumed=$([ -n "$t_resumed" ] && date -u -d "$t_resumed" +%s.%N 2> /dev/null || echo "")
save_logs shard-nodes-shard-killed
summary_lines "$ps_id"
shards_restart_accuracy=$(accuracy_of "$ps_id")
log "kill -> training again: $(seconds_between "$t_kill" "${t_resumed:-}") s"
restarted_shards=0
for id in "$spare" "${hosting[0]}"; do log_has "$id" "resumes from the checkpoint.s slice" || restarted_shards=1; done
check $restarted_shards "the spare and the surviving shard containers host the restarted run's shards, from the checkpoint's slices"
[ "$ps_status" = 0 ] && [ "$worker_statuses" = "0 0" ] && [ "$shard_statuses" = "0 0" ]
check $? "the job completed on the same ps container (ps $ps_status, workers $worker_statuses, surviving and spare shard nodes $shard_statuses); $(seconds_between "$t0" "$(now)") s from compose up"
[ -n "$shards_restart_accuracy" ] && [ "$shards_restart_accuracy" = "${container_accuracy:-}" ]
check $? "test accuracy after the restart on a spare shard node equals the undisturbed run's: ${shards_restart_accuracy:-?}% and ${container_accuracy:-?}%"
down

log "== figures: image $(( size_bytes / 1000000 )) MB, built in ${build_seconds} s; accuracy: cluster.sh 2 ${host_accuracy:-?}%, compose ${container_accuracy:-?}%, worker killed ${killed_accuracy:-?}%, ps killed ${failover_accuracy:-?}%, shard nodes ${shards_accuracy:-?}%, shard nodes with a worker killed and restarted ${shards_killed_accuracy:-?}%, shard nodes with the ps killed ${shards_failover_accuracy:-?}%, shard nodes with a shard node killed ${shards_restart_accuracy:-?}%"
