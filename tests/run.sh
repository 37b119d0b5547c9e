#!/usr/bin/env bash
# Runs the whole test suite. Installs Debian's OpenBLAS if it is missing (the native BLAS path is
# under test); NuGet packages are restored by the build; the test data (a Fashion-MNIST subset) and
# the PyTorch golden values are committed.
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/local/apt-ensure.sh libopenblas0-pthread

dotnet test DistTrain.sln -c Release -nologo "$@"
