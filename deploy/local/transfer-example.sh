#!/usr/bin/env bash
# Transfer learning on Fashion-MNIST: pretrain the CNN on classes 0-4 (configs/transfer-pretrain.json), then
# fine-tune it on classes 5-9 with the convolutions and their BatchNorm frozen and a new 5-class head
# (configs/transfer-finetune.json: 6,000 training images, of which about 3,000 are classes 5-9, 3 epochs), and train the
# same model from scratch with the same budget for comparison. Prints both test accuracies. Arguments go to both
# commands (e.g. --epochs 1 --train-limit 1000 for a quick look).
set -euo pipefail
cd "$(dirname "$0")/../.."

bash deploy/local/apt-ensure.sh dataset-fashion-mnist libopenblas0-pthread libdnnl2
dotnet build src/DistTrain.Cli/DistTrain.Cli.csproj -c Release -nologo -v quiet
disttrain() { dotnet src/DistTrain.Cli/bin/Release/net10.0/disttrain.dll "$@"; }

disttrain train --config configs/transfer-pretrain.json "$@"
pretrained="$(ls -d runs/transfer-pretrain/*/ | sort | tail -n 1)model.safetensors"
disttrain inspect "$pretrained"
disttrain finetune --config configs/transfer-finetune.json --from "$pretrained" \
  --freeze 0,1,4,5 --replace-head 5 --compare-scratch "$@"
