#!/usr/bin/env bash
# Prints a TCP port on this machine that nothing listens on (a random one in 20000-59999 that refuses a
# connection on loopback), for the local scripts' nodes. A node whose port is taken after all stops with one
# line naming it and exit code 2. Usage: free-port.sh
set -euo pipefail
for _ in $(seq 1 200); do
  port=$(( 20000 + RANDOM % 40000 ))
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; exit 0; fi
done
echo "free-port.sh: no free port found in 200 tries" >&2
exit 1
