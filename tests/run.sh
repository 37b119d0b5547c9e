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

bash deploy/local/apt-ensure.sh libopenblas0-pthread libdnnl2 docker-compose python3-torch python3-onnx python3-sklearn dataset-fashion-mnist openssl iproute2 nftables

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

dotnet test DistTrain.sln -c Release -nologo "$@"
