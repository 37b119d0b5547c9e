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

dotnet test DistTrain.sln -c Release -nologo "$@"
