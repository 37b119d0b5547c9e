# Sourced by the local cluster scripts: gives this run its own folder, job, certificates and free ports, so two
# local clusters run side by side. Expects RUN (the run folder) to be set; exports the DISTTRAIN_* variables
# every node of the run shares. Variables already set in the environment win (for example a fixed
# DISTTRAIN_Cluster__Port, or DISTTRAIN_Cluster__Tls=false for plain TCP).
mkdir -p "$RUN/logs"
bash deploy/certs/make-certs.sh "$RUN/certs" node > /dev/null
export DISTTRAIN_Cluster__JobName="${DISTTRAIN_Cluster__JobName:-local-$(basename "$RUN")}"
[ -n "${DISTTRAIN_Cluster__Secret:-}" ] || export DISTTRAIN_Cluster__SecretFile="${DISTTRAIN_Cluster__SecretFile:-$RUN/certs/job-secret}"
export DISTTRAIN_Cluster__CertificateAuthorityFile="${DISTTRAIN_Cluster__CertificateAuthorityFile:-$RUN/certs/ca.crt}"
export DISTTRAIN_Cluster__CertificateFile="${DISTTRAIN_Cluster__CertificateFile:-$RUN/certs/node.crt}"
export DISTTRAIN_Cluster__CertificateKeyFile="${DISTTRAIN_Cluster__CertificateKeyFile:-$RUN/certs/node.key}"
export DISTTRAIN_Cluster__Hostname=127.0.0.1 DISTTRAIN_Cluster__PublicHostname=127.0.0.1
# Free ports for this run's parameter-server node (Akka.Remote and data plane); workers take any free port.
export DISTTRAIN_Cluster__Port="${DISTTRAIN_Cluster__Port:-$(bash deploy/local/free-port.sh)}"
export DISTTRAIN_Cluster__DataPort="${DISTTRAIN_Cluster__DataPort:-$(bash deploy/local/free-port.sh)}"
export DISTTRAIN_Cluster__SeedNodes__0="akka.tcp://disttrain@127.0.0.1:${DISTTRAIN_Cluster__Port}"
