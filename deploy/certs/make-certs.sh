#!/usr/bin/env bash
# Makes what a DistTrain cluster needs to let in only its own nodes, with Debian's openssl:
#   ca.crt, ca.key        the cluster's own CA (EC P-256), the only issuer its nodes trust
#   NAME.crt, NAME.key    a node certificate per NAME (default: node), signed by that CA, for both TLS sides
#                         (serverAuth and clientAuth), with NAME, localhost and 127.0.0.1 as subject names
#   job-secret            the job's shared secret (32 random bytes, hex), for Cluster:SecretFile
# Usage: deploy/certs/make-certs.sh OUT_DIR [NAME...]
#   DAYS=365 (validity of node certificates), CA_DAYS=3650. Files that exist are kept, so a second run adds
#   node certificates signed by the same CA; delete OUT_DIR for a new CA and secret.
#   KEY_UID=1654 gives the node keys and the secret to that user id (the Docker image's user app), for
#   deploy/docker-compose.yml, which mounts from OUT_DIR, read-only, each node's own key and certificate, ca.crt and
#   job-secret (never ca.key); needs root (or sudo). Without it they belong to the user who runs this script.
# Keys are written with mode 600 and never belong in version control (runs/ and deploy/certs/out/ are ignored).
# Nodes use them as:
#   DISTTRAIN_Cluster__CertificateAuthorityFile=OUT_DIR/ca.crt
#   DISTTRAIN_Cluster__CertificateFile=OUT_DIR/NAME.crt  DISTTRAIN_Cluster__CertificateKeyFile=OUT_DIR/NAME.key
#   DISTTRAIN_Cluster__SecretFile=OUT_DIR/job-secret
set -euo pipefail
out="${1:?usage: make-certs.sh OUT_DIR [NAME...]}"; shift
[ $# -gt 0 ] || set -- node
command -v openssl >/dev/null || bash "$(dirname "$0")/../local/apt-ensure.sh" openssl
mkdir -p "$out"
# Docker makes an empty folder in place of a mounted file that did not exist (an `up` before this script).
for file in ca.crt ca.key job-secret "${@/%/.crt}" "${@/%/.key}"; do
  if [ -d "$out/$file" ]; then
    echo "make-certs.sh: $out/$file is a folder, not a file: docker makes one in place of a mounted file that did not exist when a container started. Remove it (sudo rm -r $out) and run this again." >&2
    exit 1
  fi
done
umask 077
days="${DAYS:-365}"; ca_days="${CA_DAYS:-3650}"

if [ ! -f "$out/ca.crt" ]; then
  openssl ecparam -name prime256v1 -genkey -noout -out "$out/ca.key"
  openssl req -x509 -new -key "$out/ca.key" -sha256 -days "$ca_days" -subj "/CN=DistTrain cluster CA $(openssl rand -hex 4)" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$out/ca.crt"
fi
[ -f "$out/job-secret" ] || openssl rand -hex 32 > "$out/job-secret"

for name in "$@"; do
  [ -f "$out/$name.crt" ] && continue
  openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt -out "$out/$name.key"
  openssl req -new -key "$out/$name.key" -subj "/CN=$name" -out "$out/$name.csr"
  openssl x509 -req -in "$out/$name.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial -sha256 -days "$days" -out "$out/$name.crt" \
    -extfile <(printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
      "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=DNS:$name,DNS:localhost,IP:127.0.0.1") 2>/dev/null
  rm -f "$out/$name.csr"
done
chmod 644 "$out"/*.crt
chmod 755 "$out"
if [ -n "${KEY_UID:-}" ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  for name in "$@"; do $sudo chown "$KEY_UID" "$out/$name.key"; done
  $sudo chown "$KEY_UID" "$out/job-secret"
fi
echo "CA, node certificate(s) ($*) and job secret in $out"
if [ -z "${KEY_UID:-}" ]; then
  echo "The keys and the secret belong to $(id -un) (uid $(id -u), mode 600); the container image runs as uid 1654: for deploy/docker-compose.yml make them with KEY_UID=1654."
fi
echo "Keep $out/ca.key off the nodes: it signs certificates that every node of this cluster trusts."
