# Sourced by the scripts that start nodes in the background (cluster.sh, failover-demo.sh, worker-loss-demo.sh).
# A background command of a script (bash without job control) starts with SIGINT ignored, so a node started plainly
# would ignore a SIGINT sent to it alone (kill -INT PID) and a Ctrl-C. `"${with_sigint[@]}" COMMAND` starts it with
# SIGINT at its default action, as `disttrain node` started by hand: SIGINT to the node alone stops it, and a Ctrl-C
# (SIGINT to the whole process group, as a terminal sends it) reaches every node directly.
with_sigint=(env --default-signal=INT)
# The scripts' INT trap must then pass a SIGINT on to the nodes only when it was sent to the script alone: a node that
# got the Ctrl-C itself and then a SIGTERM from the trap would take that as a second stop and end at once. The probe is
# a process in the script's process group that takes SIGINT's default action too, and that ends with the script
# otherwise (tail --pid): a Ctrl-C ends it, a SIGINT to the script alone does not.
start_ctrl_c_probe() { "${with_sigint[@]}" tail --pid=$$ -f /dev/null < /dev/null > /dev/null 2>&1 & ctrl_c_probe=$!; }
# ctrl_c_reached_group: true when the SIGINT the script just got ended the probe (so it went to the whole process group,
# nodes included); waits up to 0.2 s for the probe's end, which the kernel delivers with the script's own signal.
ctrl_c_reached_group() {
  local _ stat
  for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
    stat=$(cat "/proc/$ctrl_c_probe/stat" 2> /dev/null) || return 0  # ended, and reaped
    [[ "$stat" != *") Z "* ]] || return 0  # ended, not reaped yet
    sleep 0.01 || true
  done
  return 1
}
