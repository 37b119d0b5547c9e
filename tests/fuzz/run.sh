#!/usr/bin/env bash
# Fuzzes every reader of bytes from outside (tests/DistTrain.Fuzz, CsCheck): the MessagePack message serializer, the
# data plane's frame header check, safetensors, IDX and config files. Not part of tests/run.sh: a million inputs per
# reader take minutes to tens of minutes. Each target runs niced, one after another, and prints its inputs, time,
# largest allocation for one input and slowest input, or a finding with its smallest input and the seed that repeats it.
#
#   tests/fuzz/run.sh [INPUTS] [TARGET...]      INPUTS per target (default 1000000); targets default to all six:
#                                               messagepack frame-header safetensors idx config gzip
# Exit code 0 when no target found anything, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/../.."

inputs="${1:-1000000}"
[ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(messagepack frame-header safetensors idx config gzip)

dotnet build tests/DistTrain.Fuzz -c Release -nologo -v quiet
status=0
for target in "${targets[@]}"; do
  /usr/bin/time -f "$target: peak RSS %M KB, wall %e s" \
    nice -n 19 dotnet tests/DistTrain.Fuzz/bin/Release/net10.0/DistTrain.Fuzz.dll "$target" --inputs "$inputs" || status=1
done
exit $status
