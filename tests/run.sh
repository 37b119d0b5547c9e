#!/usr/bin/env bash
# Runs the whole test suite. Installs Debian's OpenBLAS and oneDNN (the native BLAS path and the oneDNN
# convolution backend are under test),
# docker-compose (it validates deploy/docker-compose.yml; no engine needed), python3-torch
# (TorchInteropTests loads DistTrain's checkpoint into PyTorch), python3-onnx (the ONNX checker judges the
# exported graphs) and python3-sklearn (SklearnCsvTests reads the CSV data sets it ships) if they are missing;
# NuGet packages are restored by the build; the test data (a Fashion-MNIST subset) and
# the PyTorch golden values are committed.
# DISTTRAIN_CONTAINER_TESTS=1 also runs tests/containers/run.sh (12 to 19 minutes here: builds the image and runs the
# compose cluster; deploy/README.md); without it that test is reported as skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/local/apt-ensure.sh libopenblas0-pthread libdnnl2 docker-compose python3-torch python3-onnx python3-sklearn

dotnet test DistTrain.sln -c Release -nologo "$@"
