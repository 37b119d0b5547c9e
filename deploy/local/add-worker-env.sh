# Sourced by a run's add-worker.sh (which deploy/local/cluster.sh writes into the run folder), with `run` already declared:
# an associative array of the run's DISTTRAIN_ variables, name to value. Leaves the environment the added worker node gets.
# The run's variables win over the caller's, so that the worker joins the run's job as the run's workers did: a worker
# with other model or data settings, or another job's name, secret or certificates, is refused, one with another seed
# node never finds the job, and a worker's own values of the parameter server's settings (Training:Epochs, the
# optimizer) are ignored. The settings that concern this node alone are the caller's, when given: Compute:* (BLAS
# threads and back ends), Metrics:* (its own metrics endpoint: the added worker serves none unless DISTTRAIN_Metrics__Port
# gives it a port of its own), Cluster:SharedMemory and Cluster:JoinTimeoutSeconds. Every other DISTTRAIN_ variable of
# the caller whose value is not the run's is named on standard error, one line each, and unset. Names match ignoring
# case, as disttrain reads them.
add_worker_node_local='^DISTTRAIN_(Compute__.+|Metrics__.+|Cluster__SharedMemory|Cluster__JoinTimeoutSeconds)$'
declare -A add_worker_run_name=() add_worker_own=()
for add_worker_name in "${!run[@]}"; do add_worker_run_name[${add_worker_name^^}]=$add_worker_name; done
# shown NAME VALUE: NAME=VALUE, without the value of a secret.
add_worker_shown() { if [[ "${1^^}" == *__SECRET ]]; then echo "$1 (its value not shown)"; else echo "$1=$2"; fi; }
for add_worker_name in $(compgen -e); do
  add_worker_upper=${add_worker_name^^}
  [[ "$add_worker_upper" == DISTTRAIN_* ]] || continue
  add_worker_kept=${add_worker_run_name[$add_worker_upper]:-}
  # The run's own variable, with the run's value: nothing to say.
  [ "$add_worker_kept" != "$add_worker_name" ] || [ "${!add_worker_name}" != "${run[$add_worker_kept]}" ] || continue
  if [[ "$add_worker_upper" =~ ${add_worker_node_local^^} ]]; then add_worker_own[$add_worker_upper]=1; continue; fi
  if [ -n "$add_worker_kept" ]; then
    add_worker_run="the run's $(add_worker_shown "$add_worker_kept" "${run[$add_worker_kept]}")"
  else
    add_worker_run="the run's value, from its config file or the default (the run set no such variable)"
  fi
  echo "add-worker.sh: $(add_worker_shown "$add_worker_name" "${!add_worker_name}") is ignored: the added worker takes $add_worker_run, to join the run's job as its workers did (only DISTTRAIN_Compute__*, DISTTRAIN_Metrics__*, DISTTRAIN_Cluster__SharedMemory and DISTTRAIN_Cluster__JoinTimeoutSeconds are the worker's own)." >&2
  unset "$add_worker_name"
done
for add_worker_name in "${!run[@]}"; do
  [ -n "${add_worker_own[${add_worker_name^^}]:-}" ] || export "$add_worker_name=${run[$add_worker_name]}"
done
unset add_worker_node_local add_worker_run_name add_worker_own add_worker_name add_worker_upper add_worker_kept add_worker_run
unset -f add_worker_shown
