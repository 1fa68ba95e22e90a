"""Cut the real sample scenes in ``../shared/data`` into training and validation tile folders.

Kampala: 512 px tiles, the left 2048 columns for training and the right 1024
for validation (the split its README gives). Zion: 256 px tiles over the
whole scene, every fourth tile on a diagonal pattern held out, so both parts
see every land-cover zone. Tiles keep the scene's georeferencing.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Callable

import rasterio
from rasterio.windows import Window

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


@dataclass(frozen=True)
class SplitPlan:
    """How one scene is cut: the tile side and which tile goes to validation."""

    name: str
    tile: int
    #: (row, col) of a tile in tile units, and the scene's tile columns -> True for validation.
    is_val: Callable[[int, int, int], bool]


PLANS = {
    "kampala": SplitPlan("kampala", 512, lambda row, col, cols: col >= cols - 2),
    "zion": SplitPlan("zion", 256, lambda row, col, cols: (row + col) % 4 == 0),
}


def cut(plan: SplitPlan, out: str, data: str = DATA) -> tuple[str, str]:
    """Write ``out/train`` and ``out/val`` (images/ + masks/); return both folders."""
    folders = {part: os.path.join(out, part) for part in ("train", "val")}
    for folder in folders.values():
        for sub in ("images", "masks"):
            os.makedirs(os.path.join(folder, sub), exist_ok=True)
    src_dir = os.path.join(data, plan.name)
    with rasterio.open(os.path.join(src_dir, "image.tif")) as image, \
            rasterio.open(os.path.join(src_dir, "mask.tif")) as mask:
        rows, cols = image.height // plan.tile, image.width // plan.tile
        for row in range(rows):
            for col in range(cols):
                window = Window(col * plan.tile, row * plan.tile, plan.tile, plan.tile)
                part = "val" if plan.is_val(row, col, cols) else "train"
                name = f"{plan.name}_r{row}_c{col}.tif"
                for src, sub in ((image, "images"), (mask, "masks")):
                    _write_window(src, window, os.path.join(folders[part], sub, name))
    return folders["train"], folders["val"]


def _write_window(src: rasterio.DatasetReader, window: Window, path: str) -> None:
    profile = src.profile
    profile.update(driver="GTiff", width=window.width, height=window.height,
                   transform=src.window_transform(window), compress="deflate", tiled=False)
    profile.pop("blockxsize", None)
    profile.pop("blockysize", None)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(src.read(window=window))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("scene", choices=sorted(PLANS))
    parser.add_argument("out")
    args = parser.parse_args()
    for folder in cut(PLANS[args.scene], args.out):
        print(folder, len(os.listdir(os.path.join(folder, "images"))))


if __name__ == "__main__":
    main()
