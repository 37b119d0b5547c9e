#!/usr/bin/env bash
# A network lab for cluster tests: every node in its own network namespace with its own address on a switch (a Linux
# bridge in a namespace of its own), links shaped per node (rate, latency, jitter, loss) and partitions injected with
# nft. Nothing is created in the machine's own network namespace: the switch, every veth pair and every rule live in
# namespaces this script makes, so the labs of concurrent runs (each with its own name) never meet, and the only
# targets are the lab's own nodes. Needs root, iproute2 (ip, tc) and nft; delay and jitter also build
# tests/netns/link-delay.c (gcc, libnetfilter-queue-dev, installed from Debian if missing).
#
#   lab.sh check                              exit 0 if labs can be made here, else 1 with the reason
#   lab.sh up LAB NODES [OWNER_PID]           makes LAB: switch LAB-sw, nodes LAB-1..LAB-NODES at 10.77.0.11, .12, ...
#                                             (OWNER_PID, default the caller: a later `up` removes labs whose owner died)
#   lab.sh addr LAB I                         prints node I's address
#   lab.sh shape LAB I [--rate R] [--delay MS] [--jitter MS] [--loss PERCENT]
#                                             shapes node I's link: R (tc units: 1gbit, 100mbit) each way, and on what
#                                             node I sends: one-way latency MS with uniform jitter +-MS, loss PERCENT
#   lab.sh partition LAB I [J...]             drops every packet between node I and nodes J... (default: all others)
#   lab.sh heal LAB I                         removes node I's partition
#   lab.sh exec LAB I COMMAND...              runs COMMAND inside node I's namespace
#   lab.sh down LAB                           ends every process inside LAB's namespaces and deletes them
#   lab.sh gc                                 removes the labs whose owner process has exited
#
# Link model: a node's link carries rate R in both directions (tbf on the node's side and on the switch's port), and
# what the node sends gets the latency, jitter and loss, so between two shaped nodes one way takes MS +- jitter and the
# round trip 2 x MS. Kernels without sch_netem (as here) get latency from link-delay, a user-space NFQUEUE program run at
# real-time priority; loss is nft's `numgen random` in the kernel. Partitions drop in both directions at node I, like a
# pulled cable: no reset reaches either side, connections time out.
#
# Scripts can `source` this file and call lab_up, lab_shape, ... with `trap 'lab_down LAB' EXIT`, so a failing run
# leaves no namespace behind; tests call `up` and `down` around each case.
set -euo pipefail

LAB_STATE_DIR=${LAB_STATE_DIR:-/run/disttrain-lab}
LAB_SUBNET_PREFIX=10.77.0
LAB_SOURCE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

lab_fail() { echo "lab.sh: $*" >&2; return 1; }

lab_check() {
  [ "$(id -u)" -eq 0 ] || { echo "network namespaces need root (running as uid $(id -u))"; return 1; }
  local tool
  for tool in ip tc nft; do command -v "$tool" > /dev/null || { echo "'$tool' is not installed (Debian: iproute2, nftables)"; return 1; }; done
  local probe="dtlabprobe$$"
  if ! ip netns add "$probe" 2> /dev/null; then echo "cannot create a network namespace here (ip netns add failed)"; return 1; fi
  local ok=0
  ip -n "$probe" link add br0 type bridge 2> /dev/null || { echo "this kernel has no bridge support"; ok=1; }
  ip netns del "$probe"
  return $ok
}

lab_node_ns() { echo "$1-$2"; }
lab_switch_ns() { echo "$1-sw"; }
lab_addr() { echo "$LAB_SUBNET_PREFIX.$((10 + $2))"; }

lab_nodes() { cat "$LAB_STATE_DIR/$1/nodes"; }

lab_gc() {
  local dir lab owner
  for dir in "$LAB_STATE_DIR"/*/; do
    [ -d "$dir" ] || continue
    lab=$(basename "$dir")
    owner=$(cat "$dir/owner" 2> /dev/null || echo 0)
    if [ "$owner" -gt 0 ] && ! kill -0 "$owner" 2> /dev/null; then
      echo "lab.sh: removing lab $lab (its owner, process $owner, has exited)" >&2
      lab_down "$lab"
    fi
  done
}

lab_up() {
  local lab=$1 nodes=$2 owner=${3:-$PPID}
  [[ "$lab" =~ ^[a-z0-9]{1,24}$ ]] || lab_fail "lab name '$lab': use 1 to 24 lower-case letters and digits" || return 1
  [[ "$nodes" =~ ^[0-9]+$ ]] && [ "$nodes" -ge 1 ] && [ "$nodes" -le 200 ] || lab_fail "nodes '$nodes': use 1 to 200" || return 1
  [ ! -e "$LAB_STATE_DIR/$lab" ] || lab_fail "lab $lab exists already; 'lab.sh down $lab' removes it" || return 1
  lab_gc
  mkdir -p "$LAB_STATE_DIR/$lab"
  echo "$owner" > "$LAB_STATE_DIR/$lab/owner"
  echo "$nodes" > "$LAB_STATE_DIR/$lab/nodes"
  local switch
  switch=$(lab_switch_ns "$lab")
  # Whatever fails below, nothing half-made stays behind.
  if ! {
    ip netns add "$switch" &&
    ip -n "$switch" link set lo up &&
    ip -n "$switch" link add br0 type bridge &&
    ip -n "$switch" link set br0 up
  }; then lab_down "$lab"; lab_fail "could not make the switch of lab $lab"; return 1; fi
  local i node
  for i in $(seq 1 "$nodes"); do
    node=$(lab_node_ns "$lab" "$i")
    # Both ends are created straight inside the lab's namespaces: nothing appears in the machine's own namespace.
    if ! {
      ip netns add "$node" &&
      ip link add name eth0 netns "$node" type veth peer name "p$i" netns "$switch" &&
      ip -n "$switch" link set "p$i" master br0 &&
      ip -n "$switch" link set "p$i" up &&
      ip -n "$node" link set lo up &&
      ip -n "$node" addr add "$(lab_addr "$lab" "$i")/24" dev eth0 &&
      ip -n "$node" link set eth0 up
    }; then lab_down "$lab"; lab_fail "could not make node $i of lab $lab"; return 1; fi
  done
}

# Builds link-delay once per source version, into a cache folder (atomic rename: concurrent labs may build at once).
lab_link_delay_binary() {
  local source="$LAB_SOURCE_DIR/link-delay.c" cache="${XDG_CACHE_HOME:-$HOME/.cache}/disttrain-lab"
  local binary
  binary="$cache/link-delay-$(sha256sum "$source" | cut -c1-16)"
  if [ ! -x "$binary" ]; then
    local ensure="$LAB_SOURCE_DIR/../../deploy/local/apt-ensure.sh"
    if [ -f "$ensure" ]; then bash "$ensure" gcc libc6-dev libnetfilter-queue-dev >&2; fi
    mkdir -p "$cache"
    gcc -O2 -Wall -o "$binary.$$" "$source" -lnetfilter_queue -lnfnetlink >&2 && mv -f "$binary.$$" "$binary"
  fi
  echo "$binary"
}

# tbf with a burst of 2 ms at the rate (at least 32 KiB) and up to 20 ms of queue, like a switch port's buffer.
lab_rate() {
  local namespace=$1 device=$2 rate=$3
  local bits
  bits=$(lab_rate_bits "$rate") || return 1
  local burst=$(( bits / 8 / 500 ))
  [ "$burst" -ge 32768 ] || burst=32768
  tc -n "$namespace" qdisc replace dev "$device" root tbf rate "$rate" burst "$burst" latency 20ms
}

# A tc rate (1gbit, 100mbit, 500kbit, 10000bit) in bits per second.
lab_rate_bits() {
  local rate=$1
  case "$rate" in
    *gbit) echo $(( ${rate%gbit} * 1000000000 ));;
    *mbit) echo $(( ${rate%mbit} * 1000000 ));;
    *kbit) echo $(( ${rate%kbit} * 1000 ));;
    *bit) echo "${rate%bit}";;
    *) lab_fail "rate '$rate': use a whole number with gbit, mbit, kbit or bit"; return 1;;
  esac
}

# Milliseconds (decimal) to whole microseconds.
lab_microseconds() {
  [[ "$1" =~ ^[0-9]+(\.[0-9]+)?$ ]] || { lab_fail "'$1' is not a number of milliseconds"; return 1; }
  awk -v ms="$1" 'BEGIN { printf "%d", ms * 1000 + 0.5 }'
}

lab_shape() {
  local lab=$1 i=$2; shift 2
  local rate="" delay=0 jitter=0 loss=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --rate) rate=$2; shift 2;;
      --delay) delay=$2; shift 2;;
      --jitter) jitter=$2; shift 2;;
      --loss) loss=$2; shift 2;;
      *) lab_fail "shape: unknown option '$1' (--rate, --delay, --jitter, --loss)"; return 1;;
    esac
  done
  local node switch
  node=$(lab_node_ns "$lab" "$i")
  switch=$(lab_switch_ns "$lab")
  ip netns list | grep -qw "$node" || lab_fail "lab $lab has no node $i" || return 1
  if [ -n "$rate" ]; then
    lab_rate "$node" eth0 "$rate" && lab_rate "$switch" "p$i" "$rate" || return 1
  fi
  if [ "$loss" != 0 ]; then
    [[ "$loss" =~ ^[0-9]+(\.[0-9]+)?$ ]] || lab_fail "loss '$loss': a percentage from 0 to 100" || return 1
    local per100k
    per100k=$(awk -v p="$loss" 'BEGIN { printf "%d", p * 1000 + 0.5 }')
    ip netns exec "$node" nft -f - <<EOF
table inet disttrain_lab_loss {
  chain postrouting {
    type filter hook postrouting priority -300; policy accept;
    oifname "eth0" numgen random mod 100000 < $per100k drop
  }
}
EOF
  fi
  local delay_us jitter_us
  delay_us=$(lab_microseconds "$delay") && jitter_us=$(lab_microseconds "$jitter") || return 1
  if [ "$delay_us" -gt 0 ] || [ "$jitter_us" -gt 0 ]; then
    [ "$jitter_us" -le "$delay_us" ] || lab_fail "jitter $jitter ms exceeds delay $delay ms" || return 1
    local binary log="$LAB_STATE_DIR/$lab/link-delay-$i.log"
    binary=$(lab_link_delay_binary) || return 1
    # Queue 0 holds what node i sends; link-delay runs inside the node's namespace (NFQUEUE is per namespace).
    ip netns exec "$node" chrt -f 50 "$binary" 0 "$delay_us" "$jitter_us" 2> "$log" &
    echo $! >> "$LAB_STATE_DIR/$lab/link-delay-pids"
    local tries=0
    until grep -qs ready "$log"; do
      tries=$((tries + 1))
      [ "$tries" -lt 100 ] || { cat "$log" >&2; lab_fail "link-delay did not start on node $i"; return 1; }
      sleep 0.05
    done
    ip netns exec "$node" iptables -t mangle -A POSTROUTING -o eth0 -j NFQUEUE --queue-num 0
  fi
}

lab_partition() {
  local lab=$1 i=$2; shift 2
  local peers=("$@") j
  if [ ${#peers[@]} -eq 0 ]; then
    for j in $(seq 1 "$(lab_nodes "$lab")"); do [ "$j" -eq "$i" ] || peers+=("$j"); done
  fi
  local addresses=""
  for j in "${peers[@]}"; do addresses+="${addresses:+, }$(lab_addr "$lab" "$j")"; done
  local node
  node=$(lab_node_ns "$lab" "$i")
  ip netns exec "$node" nft delete table inet disttrain_lab_partition 2> /dev/null || true
  ip netns exec "$node" nft -f - <<EOF
table inet disttrain_lab_partition {
  chain input {
    type filter hook input priority -400; policy accept;
    ip saddr { $addresses } drop
  }
  chain output {
    type filter hook output priority -400; policy accept;
    ip daddr { $addresses } drop
  }
}
EOF
}

lab_heal() {
  ip netns exec "$(lab_node_ns "$1" "$2")" nft delete table inet disttrain_lab_partition 2> /dev/null || true
}

lab_exec() {
  local lab=$1 i=$2; shift 2
  exec ip netns exec "$(lab_node_ns "$lab" "$i")" "$@"
}

lab_down() {
  local lab=$1 namespace pid summary=""
  # link-delay first, so its summary (how late it released packets) reaches the caller.
  if [ -f "$LAB_STATE_DIR/$lab/link-delay-pids" ]; then
    while read -r pid; do kill -TERM "$pid" 2> /dev/null || true; done < "$LAB_STATE_DIR/$lab/link-delay-pids"
    sleep 0.2
    summary=$(cat "$LAB_STATE_DIR/$lab"/link-delay-*.log 2> /dev/null | grep -v ready || true)
  fi
  for namespace in $(ip netns list | awk '{ print $1 }' | grep -E "^$lab-(sw|[0-9]+)$" || true); do
    for pid in $(ip netns pids "$namespace" 2> /dev/null); do kill -KILL "$pid" 2> /dev/null || true; done
    ip netns del "$namespace" 2> /dev/null || true
  done
  rm -rf "${LAB_STATE_DIR:?}/$lab"
  [ -z "$summary" ] || echo "$summary" >&2
}

# Run as a command (not sourced): dispatch.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  command=${1:-}; shift || true
  case "$command" in
    check) lab_check;;
    up) lab_up "$@";;
    addr) lab_addr "$@";;
    shape) lab_shape "$@";;
    partition) lab_partition "$@";;
    heal) lab_heal "$@";;
    exec) lab_exec "$@";;
    down) lab_down "$@";;
    gc) lab_gc;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 1;;
  esac
fi
