#!/usr/bin/env bash
# The base images that the Dockerfile and docker-compose.yml name, for a machine that cannot pull from an image
# registry (podman, as root). Each is made under the name the files use, so they build and run unchanged:
#   debian:bookworm-slim               Debian bookworm's minbase root file system (what the official slim image is
#                                      made of) from mmdebstrap and a Debian mirror, imported
#   mcr.microsoft.com/dotnet/sdk:10.0  that image plus this machine's .NET 10 SDK (offline-base-images/sdk.Containerfile)
#   prom/prometheus:v2.53.0            that image plus Debian's prometheus 2.42 (offline-base-images/prometheus.Containerfile)
# Grafana has no such image: docker-compose.yml starts it only with --profile dashboards.
#
# Nothing is done twice: an image that is present is kept (`podman rmi NAME` to make it again), and one that a registry
# serves is pulled instead (the real image beats a stand-in; PULL=0 skips the attempt). What it needs: root, mmdebstrap
# (installed from Debian when missing), a Debian mirror that apt on this machine reaches, and for the SDK image the
# .NET 10 SDK (`dotnet --list-sdks`; DOTNET_SDK_ROOT=/path/to/dotnet names another). This machine's apt settings for
# fetching (the Acquire:: options of /etc/apt/apt.conf.d/, such as a proxy) are used to fetch the root file system but
# are not kept in it: mmdebstrap's copy of them (/etc/apt/apt.conf.d/99mmdebstrap) is removed and its absence checked,
# so none of them reaches the DistTrain image built on it.
#
# Where the container runtime cannot apply podman's default ulimits (runc: `error setting rlimit type 7`; crun:
# `setrlimit `RLIMIT_NOFILE`: Operation not permitted`), the script writes
# /etc/containers/containers.conf.d/50-disttrain-ulimits.conf (`default_ulimits = []`); a `podman system service`
# that was started before reads it only once restarted. Where crun cannot start containers at all (`cgroups in hybrid
# mode not supported`), it writes /etc/containers/containers.conf.d/51-disttrain-runtime.conf, which makes podman use
# runc.
#
# Usage: deploy/offline-base-images.sh
# Environment: PULL=0 (never try a registry); ENGINE=docker only checks or pulls (stand-ins need podman);
#   LOG_DIR=folder for the build logs (default: a temporary folder, removed unless a build fails).
# Takes about 3 minutes when all three are made (the root file system 106 s, the SDK image 51 s, Prometheus 28 s
# on a loaded 2-core machine). Exit codes: 0 all three images are there; 1 one could not be had.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
engine="${ENGINE:-podman}"
if ! command -v "$engine" > /dev/null; then
  echo "offline-base-images: $engine is not installed. The stand-ins are built with podman (apt-get install podman, as root); ENGINE=docker only checks or pulls the images." >&2
  exit 1
fi
pull="${PULL:-1}"
log_dir_given="${LOG_DIR:-}"
logs="${LOG_DIR:-$(mktemp -d)}"
mkdir -p "$logs"
scratch="$(mktemp -d)"
failed=""
finish() {
  rm -rf "$scratch"
  if [ -z "$log_dir_given" ]; then
    if [ -n "$failed" ]; then echo "build logs kept in $logs" >&2; else rm -rf "$logs"; fi
  fi
}
trap finish EXIT
say() { echo "offline-base-images: $*"; }
fail() { failed=1; say "FAILED: $*" >&2; exit 1; }
seconds_since() { echo $(( $(date +%s) - $1 )); }
exists() { "$engine" image inspect "$1" > /dev/null 2>&1; }
# present_or_pulled NAME: 0 when the image is there afterwards (kept or pulled), 1 when a stand-in must be built.
present_or_pulled() {
  exists "$1" && { say "$1: present, kept"; return 0; }
  if [ "$pull" != 0 ]; then
    timeout 120 "$engine" pull -q "$1" > "$logs/pull.log" 2>&1 && { say "$1: pulled"; return 0; }
    say "$1: cannot be pulled ($(tail -1 "$logs/pull.log" | cut -c1-120))"
  fi
  [ "$engine" = podman ] || fail "$1 is missing and stand-ins are built with podman only"
  return 1
}

debian=docker.io/library/debian:bookworm-slim
if ! present_or_pulled "$debian"; then
  [ "$(id -u)" -eq 0 ] || fail "building $debian needs root (mmdebstrap and podman import)"
  command -v mmdebstrap > /dev/null || bash "$here/local/apt-ensure.sh" mmdebstrap > "$logs/install-mmdebstrap.log" 2>&1 \
    || fail "mmdebstrap could not be installed from Debian: $(tail -3 "$logs/install-mmdebstrap.log")"
  say "$debian: building it from Debian bookworm with mmdebstrap (minbase)"
  # This machine's fetch settings, for apt inside mmdebstrap only: mmdebstrap writes --aptopt options into the root
  # file system's /etc/apt/apt.conf.d/99mmdebstrap, which the customize hook removes again.
  aptopts=()
  for file in /etc/apt/apt.conf.d/*; do grep -q 'Acquire::' "$file" 2> /dev/null && aptopts+=("--aptopt=$file"); done
  start=$(date +%s)
  # The minbase variant with the official slim image's dpkg exclusions (no manuals, documentation or translations).
  nice -n 10 mmdebstrap --variant=minbase "${aptopts[@]}" \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook='rm -f "$1"/etc/apt/apt.conf.d/99mmdebstrap' \
    bookworm "$scratch/rootfs.tar" < /dev/null > "$logs/mmdebstrap.log" 2>&1 || fail "mmdebstrap failed: $(tail -3 "$logs/mmdebstrap.log")"
  tar -tf "$scratch/rootfs.tar" > "$scratch/rootfs.list"
  ! grep -q 'etc/apt/apt\.conf\.d/99mmdebstrap$' "$scratch/rootfs.list" \
    || fail "the root file system still holds /etc/apt/apt.conf.d/99mmdebstrap (this machine's apt settings): not imported"
  "$engine" import -q --change 'CMD ["bash"]' --change 'LABEL org.disttrain.stand-in=debian:bookworm-slim' \
    "$scratch/rootfs.tar" "$debian" > /dev/null || fail "podman import of the root file system failed"
  rm -f "$scratch/rootfs.tar"
  say "$debian: built (mmdebstrap, $(seconds_since "$start") s)"
fi

# The stand-ins below are built with RUN steps, so containers must start: runc and crun refuse to on some kernels
# unless podman leaves the ulimits alone.
if [ "$engine" = podman ] && ! podman run --rm "$debian" true > "$logs/probe.log" 2>&1 && grep -q -E "error setting rlimit|setrlimit .?RLIMIT_" "$logs/probe.log"; then
  [ "$(id -u)" -eq 0 ] || fail "the container runtime cannot set podman's default ulimits here; as root, write [containers] and default_ulimits = [] into /etc/containers/containers.conf.d/50-disttrain-ulimits.conf"
  mkdir -p /etc/containers/containers.conf.d
  printf '[containers]\ndefault_ulimits = []\n' > /etc/containers/containers.conf.d/50-disttrain-ulimits.conf
  say "the container runtime cannot set podman's default ulimits here: wrote /etc/containers/containers.conf.d/50-disttrain-ulimits.conf (restart a running podman system service so that it reads it)"
fi

# crun refuses to start containers on a host whose cgroups are in hybrid mode (v1 controllers beside a v2 tree); runc
# runs them there. Podman then uses runc when it is installed.
if [ "$engine" = podman ] && ! podman run --rm "$debian" true > "$logs/probe.log" 2>&1 && grep -q "cgroups in hybrid mode not supported" "$logs/probe.log"; then
  command -v runc > /dev/null || fail "crun cannot start containers on this host's hybrid cgroups: install runc (apt-get install runc) and run this again"
  [ "$(id -u)" -eq 0 ] || fail "crun cannot start containers on this host's hybrid cgroups; as root, write [engine] and runtime = \"runc\" into /etc/containers/containers.conf.d/51-disttrain-runtime.conf"
  mkdir -p /etc/containers/containers.conf.d
  printf '[engine]\nruntime = "runc"\n' > /etc/containers/containers.conf.d/51-disttrain-runtime.conf
  say "crun cannot start containers on this host's hybrid cgroups: wrote /etc/containers/containers.conf.d/51-disttrain-runtime.conf (podman uses runc)"
fi

# build_standin NAME CONTAINERFILE [podman build options...]
build_standin() {
  local name="$1" containerfile="$here/offline-base-images/$2" start; shift 2
  present_or_pulled "$name" && return 0
  say "$name: building the stand-in offline-base-images/$(basename "$containerfile")"
  start=$(date +%s)
  mkdir -p "$scratch/context"
  nice -n 10 "$engine" build --pull=never -q "$@" -f "$containerfile" -t "$name" "$scratch/context" > "$logs/$(basename "$containerfile" .Containerfile).log" 2>&1 \
    || fail "$name: the build failed: $(tail -3 "$logs/$(basename "$containerfile" .Containerfile).log")"
  say "$name: built ($(seconds_since "$start") s)"
}

sdk=mcr.microsoft.com/dotnet/sdk:10.0
if exists "$sdk"; then
  say "$sdk: present, kept"
else
  sdk_root="${DOTNET_SDK_ROOT:-}"
  if [ -z "$sdk_root" ]; then
    sdk_root="$(dotnet --list-sdks 2> /dev/null | awk '/^10\./ { sub(/^[^[]*\[/, ""); sub(/\]$/, ""); print; exit }')"
    sdk_root="${sdk_root%/sdk}"
  fi
  if [ -z "$sdk_root" ] || [ ! -x "$sdk_root/dotnet" ]; then
    present_or_pulled "$sdk" && sdk_root="" || fail "no .NET 10 SDK on this machine to make $sdk from (dotnet --list-sdks; or set DOTNET_SDK_ROOT)"
  fi
  [ -z "$sdk_root" ] || build_standin "$sdk" sdk.Containerfile --volume "$sdk_root:/mnt/dotnet-sdk:ro"
fi
build_standin docker.io/prom/prometheus:v2.53.0 prometheus.Containerfile
say "all base images are there"
