"""Streaming output: tiled, compressed class masks (and probabilities) with georeferencing.

Tiles are written as they are finished, so nothing scene-sized is held. The
caller writes into temp paths and renames them when the run succeeded.
"""

from __future__ import annotations

import json
from typing import Iterable, Optional

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.windows import Window

from glnet_cli.blend import FinishedTile
from glnet_cli.classes import IGNORE_INDEX, ClassTable
from glnet_cli.raster import SceneInfo

TILE = 512

#: Creation options of every mask; ``--co`` overrides them key by key.
MASK_OPTIONS = {"TILED": "YES", "BLOCKXSIZE": str(TILE), "BLOCKYSIZE": str(TILE),
                "COMPRESS": "DEFLATE", "PREDICTOR": "2", "BIGTIFF": "IF_SAFER"}

#: What the COG driver gets when ``--cog`` is asked for.
COG_OPTIONS = {"COMPRESS": "DEFLATE", "PREDICTOR": "2", "BLOCKSIZE": str(TILE),
               "OVERVIEW_RESAMPLING": "MODE", "BIGTIFF": "IF_SAFER"}


def _profile(scene: SceneInfo, count: int, nodata: Optional[int],
             creation_options: Iterable[tuple[str, str]]) -> dict:
    profile = {"driver": "GTiff", "width": scene.width, "height": scene.height, "count": count,
               "dtype": "uint8", "transform": scene.transform, "nodata": nodata,
               **{k.lower(): v for k, v in MASK_OPTIONS.items()}}
    if scene.crs is not None:
        profile["crs"] = scene.crs
    for key, value in creation_options:
        profile[key.lower()] = value
    return profile


class MaskWriter:
    """Writes finished tiles of the class mask (and optionally probabilities)."""

    def __init__(self, path: str, scene: SceneInfo, classes: ClassTable, tags: dict,
                 creation_options: Iterable[tuple[str, str]] = (),
                 probabilities_path: Optional[str] = None) -> None:
        options = list(creation_options)
        self.histogram = np.zeros(256, dtype=np.int64)
        self._mask = rasterio.open(path, "w", **_profile(scene, 1, IGNORE_INDEX, options))
        self._mask.write_colormap(1, classes.colormap())
        self._mask.update_tags(GLNET_CLASSES=json.dumps(classes.to_list()), **tags)
        self._mask.set_band_description(1, "class")
        self._probs = None
        if probabilities_path:
            self._probs = rasterio.open(probabilities_path, "w",
                                        **_profile(scene, len(classes), None, options))
            for band, name in enumerate(classes.names, start=1):
                self._probs.set_band_description(band, f"p({name}) x 255")
            self._probs.update_tags(GLNET_CLASSES=json.dumps(classes.to_list()), **tags)

    def write(self, tile: FinishedTile) -> None:
        box = tile.box
        window = Window(box.col, box.row, box.width, box.height)
        self._mask.write(tile.classes, 1, window=window)
        self.histogram += np.bincount(tile.classes.ravel(), minlength=256)
        if self._probs is not None and tile.probabilities is not None:
            self._probs.write(tile.probabilities, window=window)

    def close(self) -> None:
        self._mask.close()
        if self._probs is not None:
            self._probs.close()


def convert_to_cog(source: str, target: str) -> None:
    """Copy a finished GeoTIFF into a Cloud-Optimized GeoTIFF with mode overviews."""
    rasterio.shutil.copy(source, target, driver="COG", **COG_OPTIONS)
