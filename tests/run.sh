#!/usr/bin/env bash
# Runs the whole test suite. Installs Debian's OpenBLAS if it is missing (the native BLAS path is
# under test); NuGet packages are restored by the build; the test data (a Fashion-MNIST subset) and
# the PyTorch golden values are committed.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for package in libopenblas0-pthread; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "Installing ${missing[*]} from Debian (once)..."
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

dotnet test DistTrain.sln -c Release -nologo "$@"
