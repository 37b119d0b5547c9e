# Sourced by the lab measurement scripts (after lab.sh): starts DistTrain nodes inside a lab's namespaces, each on its
# own address with the ports of deploy/docker-compose.yml (4053 Akka.Remote, 4054 data plane), mutual TLS with this
# run's own CA, node certificates and job secret (deploy/certs/make-certs.sh).
#
#   lab_cluster_prepare RUN              certificates and secret in RUN/certs; exports the variables every node shares
#   lab_cluster_start LAB I ROLE LOG [VAR=VALUE...]
#                                        starts `disttrain node --role ROLE` in node I (seeds: nodes 1 and 2), output to
#                                        LOG, each line prefixed with the time it was written (epoch seconds, ms), as a
#                                        child of the caller (so `wait` works); its process id (the node's own: ip netns
#                                        exec execs it) goes to LAB_CLUSTER_PID; LAB_CLUSTER_NICE (default 0) is its
#                                        nice value: negative (as root) keeps other work on the machine from starving
#                                        the node, which the failure detector would take for a lost node
#   lab_log_seconds LINE                 the time of a line of such a LOG, in epoch seconds

lab_cluster_prepare() {
  local run=$1
  mkdir -p "$run"
  bash deploy/certs/make-certs.sh "$run/certs" node > /dev/null
  export DISTTRAIN_Cluster__JobName="lab-$(basename "$run")"
  export DISTTRAIN_Cluster__SecretFile="$run/certs/job-secret"
  export DISTTRAIN_Cluster__CertificateAuthorityFile="$run/certs/ca.crt"
  export DISTTRAIN_Cluster__CertificateFile="$run/certs/node.crt" DISTTRAIN_Cluster__CertificateKeyFile="$run/certs/node.key"
  export DISTTRAIN_Cluster__Hostname=0.0.0.0 DISTTRAIN_Cluster__Port=4053 DISTTRAIN_Cluster__DataPort=4054
  export DISTTRAIN_Output__Directory="$run/runs"
  # The namespaces share /dev/shm: with shared memory the tensors would bypass the shaped links being measured.
  export DISTTRAIN_Cluster__SharedMemory=false
}

lab_cluster_start() {
  local lab=$1 i=$2 role=$3 log=$4; shift 4
  env DISTTRAIN_Cluster__PublicHostname="$(lab_addr "$lab" "$i")" \
    DISTTRAIN_Cluster__SeedNodes__0="akka.tcp://disttrain@$(lab_addr "$lab" 1):4053" \
    DISTTRAIN_Cluster__SeedNodes__1="akka.tcp://disttrain@$(lab_addr "$lab" 2):4053" \
    "$@" nice -n "${LAB_CLUSTER_NICE:-0}" ip netns exec "$(lab_node_ns "$lab" "$i")" dotnet "${CLI_DLL:-src/DistTrain.Cli/bin/Release/net10.0/disttrain.dll}" \
    node --role "$role" --config "${CONFIG:?set CONFIG to the config file of the job}" \
    > >(python3 -u -c 'import sys, time
for line in sys.stdin: sys.stdout.write(f"{time.time():.3f} {line}")' > "$log") 2>&1 &
  LAB_CLUSTER_PID=$!
}

lab_log_seconds() {
  local stamp=${1%% *}
  [[ "$stamp" =~ ^[0-9]+\.[0-9]+$ ]] || return 1
  echo "$stamp"
}

# The preamble of the lab's measurement scripts: checks that a lab can run here (else exits 1, the message naming
# SCRIPT), installs the Debian packages the nodes need, builds the CLI unless CLI_DLL names a built one, and sets
# CONFIG to the main job's config.
lab_script_prepare() { # SCRIPT
  local reason
  reason=$(lab_check) || { echo "$1: $reason" >&2; exit 1; }
  bash deploy/local/apt-ensure.sh dataset-fashion-mnist libopenblas0-pthread libdnnl2 openssl
  [ -n "${CLI_DLL:-}" ] || dotnet build src/DistTrain.Cli/DistTrain.Cli.csproj -c Release -nologo -v quiet || exit 1
  export CONFIG=configs/fashion-mnist-mlp.json
}
