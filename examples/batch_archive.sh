#!/usr/bin/env bash
# A folder of scenes -> a folder of masks -> a folder of Shapefiles, resumable.
#
#   examples/batch_archive.sh SCENES_DIR OUT_DIR MODEL.pt [CLASS_IDS]
#
# Run it again after an interruption: finished masks and Shapefiles are kept.
# Under several GPUs: GLNET_TORCHRUN="torchrun --nproc_per_node 4" examples/batch_archive.sh ...
set -euo pipefail
scenes=${1:?usage: batch_archive.sh SCENES_DIR OUT_DIR MODEL.pt [CLASS_IDS]}
out=${2:?output folder}
model=${3:?model file}
classes=${4:-}
mkdir -p "$out/masks" "$out/vectors"

runner=(glnet)
if [[ -n ${GLNET_TORCHRUN:-} ]]; then
  read -r -a runner <<<"$GLNET_TORCHRUN -m glnet_cli"
fi

# 1. Masks: the model is loaded once; failed scenes are reported, not fatal.
#    --skip-existing keeps finished masks; --overwrite then only lets this run's
#    report replace the last run's.
status=0
"${runner[@]}" segment "$scenes" -o "$out/masks" --model "$model" --skip-existing \
  --report "$out/segment_report.json" --overwrite --cog || status=$?

# 2. Polygons for every mask that has none yet.
for mask in "$out"/masks/*_mask.tif; do
  [[ -e $mask ]] || continue
  shp="$out/vectors/$(basename "${mask%_mask.tif}").shp"
  [[ -e $shp ]] && continue
  glnet vectorize "$mask" -o "$shp" ${classes:+--classes "$classes"} --quiet || status=$?
done

echo "report: $out/segment_report.json"
exit "$status"
