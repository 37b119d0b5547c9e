#!/usr/bin/env bash
# The main job end to end on a fresh Debian machine that has the .NET SDK:
# installs the Fashion-MNIST data and OpenBLAS from Debian if they are missing, builds the CLI (NuGet restore
# included, incremental), and trains configs/fashion-mnist-mlp.json in single-node mode.
# Extra arguments go to `disttrain train`, e.g. --workers 2 --epochs 3.
set -euo pipefail
cd "$(dirname "$0")/../.."

missing=()
for package in dataset-fashion-mnist libopenblas0-pthread; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "Installing ${missing[*]} from Debian (once)..."
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

dotnet build src/DistTrain.Cli/DistTrain.Cli.csproj -c Release -nologo -v quiet
exec dotnet src/DistTrain.Cli/bin/Release/net10.0/disttrain.dll train --config configs/fashion-mnist-mlp.json "$@"
