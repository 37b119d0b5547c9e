#!/usr/bin/env bash
# Runs the whole test suite. Installs Debian's OpenBLAS and oneDNN (the native BLAS path and the oneDNN
# convolution backend are under test),
# docker-compose (it validates deploy/docker-compose.yml; no engine needed), python3-torch
# (TorchInteropTests loads DistTrain's checkpoint into PyTorch), python3-onnx (the ONNX checker judges the
# exported graphs), python3-sklearn (SklearnCsvTests reads the CSV data sets it ships), dataset-fashion-mnist and
# openssl (the local cluster scripts under test install them when missing, and apt's lines in the middle of a script's
# output failed the first such test on a fresh machine), iproute2 and nftables
# (the cluster tests across network namespaces, tests/netns/lab.sh; they run only with DISTTRAIN_NETNS_TESTS=1
# and as root, and are reported as skipped with the reason otherwise) if they are missing;
# NuGet packages are restored by the build; the test data (a Fashion-MNIST subset) and
# the PyTorch golden values are committed.
# DISTTRAIN_CONTAINER_TESTS=1 also runs tests/containers/run.sh (13 to 30 minutes here: builds the image and runs the
# compose cluster; deploy/README.md); without it that test is reported as skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/local/apt-ensure.sh libopenblas0-pthread libdnnl2 docker-compose python3-torch python3-onnx python3-sklearn dataset-fashion-mnist openssl iproute2 nftables bash-builtins

# The suite starts several hundred short-lived .NET processes (cluster nodes, CLI runs) and runs each test's code a
# few times only. The shipped CLI and the test host are built with full JIT from the start (TieredCompilation false:
# the hot training loops must not run tier-0 code; docs/benchmarks.md, "Tiered compilation"), which compiles every
# method of Akka's start-up fully optimized. For the suite, tiered compilation without PGO instrumentation, and with
# methods that contain loops compiled fully optimized at once, cut a sample of two cluster tests from 36 s to 30 s
# (alternated twice), and the whole suite ran in 23 min 26 s against 27 min 15 s the day before (not side by side).
# The JIT's tiers do not change floating-point results; the suite's bit-identity tests run under these settings.
# A variable already set by the caller wins.
export DOTNET_TieredCompilation="${DOTNET_TieredCompilation:-1}"
export DOTNET_TC_QuickJitForLoops="${DOTNET_TC_QuickJitForLoops:-0}"
export DOTNET_TieredPGO="${DOTNET_TieredPGO:-0}"

# Ahead-of-time code for the suite's processes. Each of them (several hundred cluster nodes and CLI runs) used to JIT
# Akka's, MessagePack's and DistTrain's start-up code before doing anything: about 2.4 s of CPU for a small single-node
# run, 1.2 s with ReadyToRun images of the same assemblies. On three cluster tests, alternated twice, the suite's
# wall time fell from 47 s and 51 s to 38 s and 39 s. The images are the same IL and metadata with native code added;
# tiered compilation recompiles the hot methods as usual. So the solution is built, the CLI is published with
# ReadyToRun into bin/ready-to-run (the first run restores .NET's crossgen2 and runtime packs from NuGet; later runs
# compile only what changed), and each image replaces its plain copy beside the tests only where that copy is the very
# file the CLI was built with (a package the tests resolve to another version keeps the tests' copy). The tests then run
# without a second build. If the publish fails, or the caller turned tiered compilation off (the images' code would
# then never be recompiled), the suite runs on the plain build. The shipped CLI is not published this way: it disables
# tiered compilation, so its training loops would stay on the precompiled code.
# Arguments go to `dotnet test` (--filter, --logger, ...); the build is Release.
dotnet build DistTrain.sln -c Release -nologo
tests_bin=tests/DistTrain.Tests/bin/Release/net10.0
cli_bin=src/DistTrain.Cli/bin/Release/net10.0
ready_to_run=tests/DistTrain.Tests/bin/ready-to-run
for folder in "$tests_bin" "$cli_bin"; do
  [ -d "$folder" ] || { echo "tests/run.sh: $folder is missing after the build: update tests_bin and cli_bin to the projects' output folders." >&2; exit 2; }
done
if [ "$DOTNET_TieredCompilation" = 0 ]; then
  echo "tests/run.sh: DOTNET_TieredCompilation=0: the suite runs on the plain build (no ReadyToRun images)." >&2
elif rm -rf "$ready_to_run" && dotnet publish src/DistTrain.Cli -c Release --use-current-runtime --self-contained false -p:PublishReadyToRun=true \
     -o "$ready_to_run" -nologo -v quiet; then
  for image in "$ready_to_run"/*.dll; do
    name="${image##*/}"
    if [ -f "$tests_bin/$name" ] && cmp -s "$tests_bin/$name" "$cli_bin/$name"; then cp -p "$image" "$tests_bin/"; fi
  done
else
  echo "tests/run.sh: warning: the ReadyToRun publish of the CLI failed (above); the suite runs on the plain build, which is slower." >&2
fi

dotnet test DistTrain.sln -c Release --no-build -nologo "$@"
