# Sourced by the lab measurement scripts (after lab.sh): starts DistTrain nodes inside a lab's namespaces, each on its
# own address with the ports of deploy/docker-compose.yml (4053 Akka.Remote, 4054 data plane), mutual TLS with this
# run's own CA, node certificates and job secret (deploy/certs/make-certs.sh).
#
#   lab_cluster_prepare RUN              certificates and secret in RUN/certs; exports the variables every node shares
#   lab_cluster_start LAB I ROLE LOG [VAR=VALUE...]
#                                        starts `disttrain node --role ROLE` in node I (seeds: nodes 1 and 2), output to
#                                        LOG, as a child of the caller (so `wait` works); its process id (the node's own:
#                                        ip netns exec execs it) goes to LAB_CLUSTER_PID
#   lab_log_seconds LINE                 the UTC time of an Akka log line ([INFO][11/30/2026 04:07:23.055Z]...) in epoch seconds

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
}

lab_cluster_start() {
  local lab=$1 i=$2 role=$3 log=$4; shift 4
  env DISTTRAIN_Cluster__PublicHostname="$(lab_addr "$lab" "$i")" \
    DISTTRAIN_Cluster__SeedNodes__0="akka.tcp://disttrain@$(lab_addr "$lab" 1):4053" \
    DISTTRAIN_Cluster__SeedNodes__1="akka.tcp://disttrain@$(lab_addr "$lab" 2):4053" \
    "$@" ip netns exec "$(lab_node_ns "$lab" "$i")" dotnet "${CLI_DLL:-src/DistTrain.Cli/bin/Release/net10.0/disttrain.dll}" \
    node --role "$role" --config "${CONFIG:?set CONFIG to the config file of the job}" > "$log" 2>&1 &
  LAB_CLUSTER_PID=$!
}

lab_log_seconds() {
  local stamp month day year clock
  stamp=$(echo "$1" | grep -oE '[0-9]{2}/[0-9]{2}/[0-9]{4} [0-9:.]+Z' | head -1)
  [ -n "$stamp" ] || return 1
  IFS='/ ' read -r month day year clock <<< "${stamp%Z}"
  date -u -d "$year-$month-$day $clock UTC" +%s.%N
}
