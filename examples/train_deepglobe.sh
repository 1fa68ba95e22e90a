#!/usr/bin/env bash
# GLNet's three stages on DeepGlobe land cover, with the paper's settings, on a GPU machine.
#
#   examples/train_deepglobe.sh DEEPGLOBE_TRAIN_DIR [OUT.pt]
#
# DEEPGLOBE_TRAIN_DIR holds the challenge's *_sat.jpg / *_mask.png pairs
# (2448 x 2448, RGB colour-coded masks). --recipe paper: stage epochs and rates are
# the paper's (120 / 50 / 120 epochs; 5e-5 / 2e-5 / 5e-5); resnet50 trunks
# start from ImageNet weights, which must already be in torchvision's cache.
# Several GPUs: GLNET_TORCHRUN="torchrun --nproc_per_node 4" examples/train_deepglobe.sh ...
set -euo pipefail
tiles=${1:?usage: train_deepglobe.sh DEEPGLOBE_TRAIN_DIR [OUT.pt]}
out=${2:-deepglobe_glnet.pt}

runner=(glnet)
if [[ -n ${GLNET_TORCHRUN:-} ]]; then
  read -r -a runner <<<"$GLNET_TORCHRUN -m glnet_cli"
fi

"${runner[@]}" train --tiles "$tiles" -o "$out" \
  --recipe paper --classes deepglobe --backbone resnet50 --pretrained imagenet \
  --size-g 508 --size-p 508 --batch-size 6 --sub-batch-size 6 \
  --epochs 120,50,120 --lr 5e-5,2e-5,5e-5 --val-split 0.1 \
  --device cuda --precision fp16 --num-workers 8 --seed 0 \
  ${GLNET_RESUME:+--resume}
glnet info "$out"
