"""Make a small synthetic land-cover dataset with known labels, for the quickstart.

    python examples/make_sample_data.py OUT_DIR

Writes OUT_DIR/tiles/{images,masks}/tile_NN.tif (training tiles),
OUT_DIR/scene.tif with OUT_DIR/truth.tif (a held-out scene and its labels) and
OUT_DIR/classes.json. Three classes with their own colour and texture (water:
dark and smooth, vegetation: green and mottled, built: grey with a street
grid) fill random Voronoi cells, so the labels are exact and a tiny model can
learn them in a minute on a CPU. Everything is georeferenced (EPSG:32616,
0.5 m pixels), like a real orthophoto.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

CLASSES = [
    {"id": 0, "name": "water", "color": [30, 80, 200]},
    {"id": 1, "name": "vegetation", "color": [40, 170, 60]},
    {"id": 2, "name": "built", "color": [200, 200, 200]},
]


def landcover(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """An RGB uint8 image and its class mask, ``size`` x ``size``."""
    cells = max(6, size * size // 5000)
    centres = rng.uniform(0, size, (cells, 2))
    kinds = rng.integers(0, 3, cells)
    yy, xx = np.mgrid[0:size, 0:size]
    owner = np.zeros((size, size), dtype=np.int64)
    best = np.full((size, size), np.inf)
    for i, (cy, cx) in enumerate(centres):
        dist = (yy - cy) ** 2 + (xx - cx) ** 2
        closer = dist < best
        owner[closer], best[closer] = i, dist[closer]
    mask = kinds[owner].astype(np.uint8)
    noise = rng.normal(0, 1, (3, size, size))
    image = np.empty((3, size, size))
    water, veg, built = (mask == 0), (mask == 1), (mask == 2)
    image[:, water] = (np.array([25, 60, 120])[:, None] + 6 * noise[:, water])
    mottle = 25 * np.sin(xx / 3.0 + yy / 5.0)[veg]
    image[:, veg] = np.array([50, 120, 45])[:, None] + mottle + 15 * noise[:, veg]
    streets = ((xx % 24) < 3) | ((yy % 24) < 3)
    image[:, built] = (np.array([150, 145, 140])[:, None] - 70 * streets[built]
                       + 12 * noise[:, built])
    return np.clip(image, 0, 255).astype(np.uint8), mask


def write(path: Path, array: np.ndarray, row: int, col: int) -> None:
    bands = array if array.ndim == 3 else array[None]
    with rasterio.open(path, "w", driver="GTiff", width=bands.shape[2], height=bands.shape[1],
                       count=bands.shape[0], dtype=bands.dtype, crs="EPSG:32616",
                       transform=from_origin(500000 + col * 0.5, 4100000 - row * 0.5, 0.5, 0.5),
                       tiled=True, blockxsize=256, blockysize=256, compress="deflate") as dst:
        dst.write(bands)


def main(out: Path, tiles: int = 16, tile_size: int = 256, scene_size: int = 512) -> None:
    rng = np.random.default_rng(2019)
    for folder in ("tiles/images", "tiles/masks"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    for i in range(tiles):
        image, mask = landcover(tile_size, rng)
        write(out / "tiles" / "images" / f"tile_{i:02d}.tif", image, 0, i * tile_size)
        write(out / "tiles" / "masks" / f"tile_{i:02d}.tif", mask, 0, i * tile_size)
    image, mask = landcover(scene_size, rng)
    write(out / "scene.tif", image, 1000, 0)
    write(out / "truth.tif", mask, 1000, 0)
    (out / "classes.json").write_text(json.dumps(CLASSES, indent=2))
    print(f"wrote {tiles} training tiles, scene.tif and truth.tif to {out}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[2].strip())
    main(Path(sys.argv[1]))
