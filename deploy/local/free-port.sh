#!/usr/bin/env bash
# Prints a TCP port on this machine that nothing listens on, for the local scripts' nodes: a random one from 20000 up
# to the start of the system's ephemeral range (net.ipv4.ip_local_port_range, 32768 by default), which outgoing
# connections never take between this pick and the node's bind, that refuses a connection on loopback. (When that
# range starts below 21000, the ports come from 20000-59999.) A node whose port is taken after all stops with one line
# naming it and exit code 2. Usage: free-port.sh
set -euo pipefail
ephemeral_start=32768
if [ -r /proc/sys/net/ipv4/ip_local_port_range ]; then
  read -r ephemeral_start _ < /proc/sys/net/ipv4/ip_local_port_range || ephemeral_start=32768
fi
top=$(( ephemeral_start > 21000 ? ephemeral_start : 60000 ))
for _ in $(seq 1 200); do
  port=$(( 20000 + RANDOM % (top - 20000) ))
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; exit 0; fi
done
echo "free-port.sh: no free port found in 200 tries" >&2
exit 1
