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
# nodes included); waits up to 1 s for the probe's end, which the kernel delivers with the script's own signal but which
# can take a while on a loaded machine (0.2 s, the limit before, could be too short on 2 busy cores: a Ctrl-C was then
# taken for a SIGINT to the script alone, and the nodes got a SIGTERM on top of it, a second stop that ends them at once).
# A SIGINT to the script alone is passed on that much later.
ctrl_c_reached_group() {
  local stat start=${EPOCHREALTIME/[.,]/}
  while true; do
    stat=$(cat "/proc/$ctrl_c_probe/stat" 2> /dev/null) || return 0  # ended, and reaped
    [[ "$stat" != *") Z "* ]] || return 0  # ended, not reaped yet
    [ $(( ${EPOCHREALTIME/[.,]/} - start )) -lt 1000000 ] || return 1
    sleep 0.01 || true
  done
}
# ctrl_c_probe_runs: true while the probe runs, that is while no SIGINT or SIGTERM has reached the script's whole process
# group (a signal the scripts trap ends the probe, which takes its default action, as it ends every node).
ctrl_c_probe_runs() {
  local stat
  stat=$(cat "/proc/$ctrl_c_probe/stat" 2> /dev/null) && [[ "$stat" != *") Z "* ]]
}
