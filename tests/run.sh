#!/usr/bin/env bash
# Runs the whole test suite. It needs only the .NET SDK: NuGet packages are restored by the
# build, and the test data (a Fashion-MNIST subset) and the PyTorch golden values are committed.
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet test DistTrain.sln -c Release -nologo "$@"
