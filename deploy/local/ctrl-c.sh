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
# ctrl_c_reached_group: true when the SIGINT or SIGTERM the script just got, or an earlier one, ended the probe (so it
# went to the whole process group, nodes included); waits up to 1 s for the probe's end, which the kernel delivers with
# the script's own signal but which can take a while on a loaded machine (0.2 s, the limit before, could be too short on
# 2 busy cores: a Ctrl-C was then taken for a SIGINT to the script alone, and the nodes got a SIGTERM on top of it, a
# second stop that ends them at once). A signal to the script alone is passed on that much later. The probe's state is
# read with the `read` builtin, not a command substitution: bash 5.2 interrupted by a second signal inside `$(...)` in a
# trap printed a syntax error.
ctrl_c_reached_group() {
  local stat start=${EPOCHREALTIME/[.,]/}
  while true; do
    { read -r stat < "/proc/$ctrl_c_probe/stat"; } 2> /dev/null || return 0  # ended, and reaped
    [[ "$stat" != *") Z "* ]] || return 0  # ended, not reaped yet
    [ $(( ${EPOCHREALTIME/[.,]/} - start )) -lt 1000000 ] || return 1
    sleep 0.01 || true
  done
}
# A second SIGTERM is passed on to the nodes only if it, too, did not reach the group (`ctrl_c_reached_group || kill`): a
# look at the probe's state alone is not enough. bash runs the trap of the second signal inside the first one's (in its
# `sleep`), and when a SIGTERM to the process group follows one to the script alone (as timeout sends them), the trap can
# run before the probe, ended by that same signal, is seen to have ended: passed on, it was the nodes' second signal, and
# they ended at once without their last lines (one run in a few on 2 busy cores).
# quiet_stderr: from here on the script's standard error goes through a filter that drops the line "Terminated" that bash
# prints when a SIGTERM to the process group ends a command of the script's own (a sleep or cat of its checks), and bash's
# job lines of nodes ended by a signal ("line N: PID Terminated ... node --role worker ..."), only: the script's own lines
# and bash's other messages, its errors included, pass. The filter ignores SIGINT and SIGTERM, so that a Ctrl-C or a
# SIGTERM to the process group leaves the script's lines a way to the screen. `screen` is the real standard error.
quiet_stderr() {
  exec {screen}>&2 2> >(trap '' INT TERM; exec sed -u -E -e '/^.*: line [0-9]+: +[0-9]+ .* node --role (parameter-server|worker) /d' -e '/^Terminated$/d' >&2)
  stderr_filter=$!
}
# end_quiet_stderr: the script's standard error is the real one again, and the filter has printed its last line, so that
# nothing reaches the screen after the script ends. Called on every way out after quiet_stderr.
end_quiet_stderr() {
  [ -z "${stderr_filter:-}" ] || { exec 2>&"$screen" {screen}>&-; wait "$stderr_filter" 2>/dev/null || true; stderr_filter=; }
}
# wait_gone PID...: waits for each of these children that still exists. Not a plain `wait PID` (or `wait` with no
# arguments, which after quiet_stderr also waits for the filter, which ends only after the script): bash 5.2 can lose the
# end of a child that ends while a trap runs a command substitution (the probe, ended by the same signal to the process
# group), and `wait` for it then blocks as long as another child, the filter, runs.
wait_gone() {
  local pid
  local code
  for pid in "$@"; do
    while kill -0 "$pid" 2>/dev/null; do
      code=0; wait "$pid" 2>/dev/null || code=$?
      [ "$code" -ne 127 ] || break  # not a child of the script (any more): a reaped PID the system gave another process
    done
  done
  return 0
}
