#!/usr/bin/env bash
# Your own images: writes Fashion-MNIST as a folder of PNGs (one sub-folder per class; 10,000 training and 2,000
# test images by default), trains the MLP on it (configs/fashion-mnist-image-folder.json), predicts three of the
# test images and evaluates the model on the test folder (confusion matrix in runs/image-folder/confusion-matrix.png).
#   ./deploy/local/image-folder-example.sh [TRAIN_IMAGES] [TEST_IMAGES]
set -euo pipefail
cd "$(dirname "$0")/../.."

bash deploy/local/apt-ensure.sh dataset-fashion-mnist python3-pil libopenblas0-pthread libdnnl2
dotnet build src/DistTrain.Cli/DistTrain.Cli.csproj -c Release -nologo -v quiet
disttrain() { dotnet src/DistTrain.Cli/bin/Release/net10.0/disttrain.dll "$@"; }

rm -rf runs/fashion-mnist-png
/usr/bin/python3 deploy/local/write-image-folder.py /usr/share/datasets/fashion-mnist runs/fashion-mnist-png "${1:-10000}" "${2:-2000}"
disttrain train --config configs/fashion-mnist-image-folder.json
model="$(ls -d runs/image-folder/*/ | sort | tail -n 1)model.safetensors"
disttrain predict --model "$model" runs/fashion-mnist-png/test/Sneaker/00009.png runs/fashion-mnist-png/test/Trouser/00002.png \
  runs/fashion-mnist-png/test/Shirt/00004.png
disttrain evaluate --model "$model" --data runs/fashion-mnist-png/test --heatmap runs/image-folder/confusion-matrix.png
