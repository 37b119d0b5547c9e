#!/usr/bin/env bash
# Runs the whole test suite. Installs Debian's OpenBLAS (the native BLAS path is under test) and
# docker-compose (it validates deploy/docker-compose.yml; no engine needed) if they are missing;
# NuGet packages are restored by the build; the test data (a Fashion-MNIST subset) and
# the PyTorch golden values are committed.
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/local/apt-ensure.sh libopenblas0-pthread docker-compose

dotnet test DistTrain.sln -c Release -nologo "$@"
