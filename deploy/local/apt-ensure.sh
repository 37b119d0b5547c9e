#!/usr/bin/env bash
# Installs the named Debian packages that are not installed yet, and nothing else: a second run
# does nothing. Uses sudo when not root. Usage: apt-ensure.sh PACKAGE...
set -euo pipefail
missing=()
for package in "$@"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "Installing ${missing[*]} from Debian (once)..."
# Another apt-get (a fresh machine's unattended upgrades, a second terminal) holds dpkg's lock for a while: wait for
# it, up to 10 minutes, rather than fail. That option covers dpkg's locks only; `update` takes the package lists'
# lock, so it is retried for as long. env passes DEBIAN_FRONTEND through sudo, which would drop it.
wait_lock=(-o DPkg::Lock::Timeout=600)
for attempt in $(seq 60); do
  $sudo apt-get "${wait_lock[@]}" update -qq && break
  [ "$attempt" -lt 60 ] || exit 1
  echo "apt-get update failed (another apt holding its lock?); trying again in 10 s" >&2
  sleep 10
done
$sudo env DEBIAN_FRONTEND=noninteractive apt-get "${wait_lock[@]}" install -y -qq "${missing[@]}"
