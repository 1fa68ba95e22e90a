#!/usr/bin/env bash
# A STAC catalogue in, masks with quick looks and a STAC catalogue of them out.
#
#   examples/stac_archive.sh CATALOG.json|URL OUT_DIR MODEL.pt [ASSET]
#
# Every item of the catalogue (walked through its children), an ItemCollection
# (a saved search) or a single item is segmented. The asset read is ASSET, else
# the one whose eo:bands hold the model's bands (red, green, blue for an RGB
# model, in the model's order whatever the asset's), else the item's only raster.
# Beside each mask: ITEM_mask.json (a STAC Item: footprint, projection, classes,
# model digest, derived_from the input item) and ITEM_mask.png (a quick look).
# OUT_DIR/catalog.json links them all; run it again to resume.
set -euo pipefail
catalog=${1:?usage: stac_archive.sh CATALOG.json|URL OUT_DIR MODEL.pt [ASSET]}
out=${2:?output folder}
model=${3:?model file}
asset=${4:-}
mkdir -p "$out"

glnet --config GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR \
  segment "$catalog" -o "$out" --model "$model" ${asset:+--asset "$asset"} \
  --stac --preview --cog --skip-existing --report "$out/report.json" --overwrite
echo "catalogue: $out/catalog.json"
