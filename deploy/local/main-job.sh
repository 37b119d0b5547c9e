#!/usr/bin/env bash
# The main job end to end on a fresh Debian machine that has the .NET 10 SDK (global.json pins it):
# installs the Fashion-MNIST data, OpenBLAS and oneDNN (convolutions) from Debian if they are missing, builds the CLI (NuGet restore
# included, incremental), and trains configs/fashion-mnist-mlp.json in single-node mode.
# Extra arguments go to `disttrain train`, e.g. --workers 2 --epochs 3.
set -euo pipefail
cd "$(dirname "$0")/../.."

bash deploy/local/apt-ensure.sh dataset-fashion-mnist libopenblas0-pthread libdnnl2

dotnet build src/DistTrain.Cli/DistTrain.Cli.csproj -c Release -nologo -v quiet
exec dotnet src/DistTrain.Cli/bin/Release/net10.0/disttrain.dll train --config configs/fashion-mnist-mlp.json "$@"
