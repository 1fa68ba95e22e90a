#!/usr/bin/env bash
# Convert the released reference GLNet DeepGlobe checkpoints and segment with them.
#
#   examples/reference_checkpoints.sh CHECKPOINT_DIR SCENE.tif [OUT.tif]
#
# CHECKPOINT_DIR holds the authors' fpn_deepglobe_global.pth,
# fpn_deepglobe_global2local.pth and fpn_deepglobe_local2global.pth
# (download them from the reference repository's README).
# The released models expect 3-band uint8 RGB at about 0.5 m, like DeepGlobe.
set -euo pipefail
dir=${1:?usage: reference_checkpoints.sh CHECKPOINT_DIR SCENE.tif [OUT.tif]}
scene=${2:?scene}
out=${3:-${scene%.*}_deepglobe.tif}
model="$dir/deepglobe_glnet.pt"

if [[ ! -e $model ]]; then
  glnet convert-reference \
    --stage1 "$dir/fpn_deepglobe_global.pth" \
    --stage2 "$dir/fpn_deepglobe_global2local.pth" \
    --stage3 "$dir/fpn_deepglobe_local2global.pth" \
    --classes deepglobe -o "$model"
fi
glnet info "$scene" --model "$model"
glnet segment "$scene" -o "$out" --model "$model" --overwrite  # bf16/fp16 where the device has it
glnet vectorize "$out" -o "${out%.*}.gpkg" --layout layer-per-class --background 0 --overwrite
