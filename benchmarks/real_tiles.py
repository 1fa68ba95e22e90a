"""Cut the real sample scenes in ``../shared/data`` into training and validation tile folders.

Kampala: 512 px tiles, the left 2048 columns for training and the right 1024
for validation (the split its README gives). Zion: 128 px tiles, a quarter of
them held out, chosen from the labels alone so that every land-cover class has
about a quarter of its pixels in validation (Zion's rare classes sit in a few
spots: a fixed pattern of 256 px tiles put 93% of the cultivated pixels and
70% of the herbaceous ones in validation, leaving training almost none). Tiles
keep the scene's georeferencing.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import rasterio
from rasterio.windows import Window

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


#: Per-tile class pixel counts, shape (tile rows, tile columns, classes).
TileCounts = np.ndarray


@dataclass(frozen=True)
class SplitPlan:
    """How one scene is cut: the tile side and which tiles go to validation."""

    name: str
    tile: int
    #: Per-tile class counts -> (row, col) of the validation tiles.
    choose_val: Callable[[TileCounts], set[tuple[int, int]]]


def right_columns(count: int) -> Callable[[TileCounts], set[tuple[int, int]]]:
    """The last ``count`` tile columns."""
    def choose(counts: TileCounts) -> set[tuple[int, int]]:
        rows, cols = counts.shape[:2]
        return {(r, c) for r in range(rows) for c in range(cols - count, cols)}
    return choose


def stratified(share: float) -> Callable[[TileCounts], set[tuple[int, int]]]:
    """``share`` of the tiles, added one at a time, each the tile that keeps every class's
    validation fraction closest to its due so far (rare classes weigh as much as common
    ones); deterministic, from the labels only."""
    def choose(counts: TileCounts) -> set[tuple[int, int]]:
        cols = counts.shape[1]
        flat = counts.reshape(-1, counts.shape[2]).astype(float)
        total = flat.sum(axis=0)
        flat, total = flat[:, total > 0], total[total > 0]
        wanted = round(len(flat) * share)
        chosen: list[int] = []
        held = np.zeros_like(total)
        for step in range(1, wanted + 1):
            errors = (((held + flat) / total - share * step / wanted) ** 2).sum(axis=1)
            errors[chosen] = np.inf
            best = int(np.argmin(errors))
            chosen.append(best)
            held += flat[best]
        return {divmod(index, cols) for index in chosen}
    return choose


PLANS = {
    "kampala": SplitPlan("kampala", 512, right_columns(2)),
    "zion": SplitPlan("zion", 128, stratified(0.25)),
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
        labels = mask.read(1, window=Window(0, 0, cols * plan.tile, rows * plan.tile))
        val = plan.choose_val(_tile_counts(labels, plan.tile, rows, cols, mask.nodata))
        for row in range(rows):
            for col in range(cols):
                window = Window(col * plan.tile, row * plan.tile, plan.tile, plan.tile)
                part = "val" if (row, col) in val else "train"
                name = f"{plan.name}_r{row}_c{col}.tif"
                for src, sub in ((image, "images"), (mask, "masks")):
                    _write_window(src, window, os.path.join(folders[part], sub, name))
    return folders["train"], folders["val"]


def _tile_counts(labels: np.ndarray, tile: int, rows: int, cols: int,
                 nodata: float | None) -> TileCounts:
    """Class pixel counts of each tile; nodata pixels are no class and are not counted."""
    blocks = labels.reshape(rows, tile, cols, tile).transpose(0, 2, 1, 3).reshape(rows * cols, -1)
    top = int(labels.max()) + 1
    counts = np.stack([np.bincount(block, minlength=top) for block in blocks])
    if nodata is not None and 0 <= nodata < top:
        counts[:, int(nodata)] = 0
    return counts.reshape(rows, cols, top)


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
