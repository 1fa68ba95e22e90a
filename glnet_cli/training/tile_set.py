"""What the checked tiles decide together: classes, input bands, usable tiles, scaling.

:func:`glnet_cli.training.tiles.inspect_pair` looks at one pair at a time;
here the pairs are judged against each other (a tile whose bands or data type
differ from the others' is a problem, as is a mask value outside the class
table), every problem is settled at once, and the input scaling is measured.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from typing import Optional, Sequence

import numpy as np

from glnet_cli.classes import IGNORE_INDEX, ClassTable, generic_table
from glnet_cli.errors import DataError
from glnet_cli.io.model.checkpoint import InputScaling
from glnet_cli.io.raster.read import SceneReader
from glnet_cli.io.raster.windows import Box
from glnet_cli.training.tiles import PairProblem, TileInfo

log = logging.getLogger(__name__)

#: Bad pairs named in the one error or warning about them; -v logs them all.
SHOWN_PROBLEMS = 3


def infer_classes(tiles: Sequence[TileInfo], ignore_index: int) -> ClassTable:
    """A generic table covering every id found in index masks (at least two classes)."""
    found = [v for t in tiles for v in t.values if v != ignore_index]
    top = max(found, default=1)
    if top >= IGNORE_INDEX:
        raise DataError(f"mask value {top} is too large for a class id; give --classes and "
                        "--ignore-index to say which values are classes")
    return generic_table(max(2, top + 1))


def check_tiles(infos: Sequence[TileInfo | PairProblem], classes: ClassTable,
                ignore_index: int, bands: Optional[Sequence[int]] = None
                ) -> tuple[list[TileInfo], list[PairProblem], tuple[int, ...]]:
    """Checks across pairs: class ids, band layout and data type.

    Returns:
        The usable tiles, every problem (by file name), and the input bands.
    """
    problems = [i for i in infos if isinstance(i, PairProblem)]
    tiles = [i for i in infos if isinstance(i, TileInfo)]
    if not tiles:
        return [], problems, tuple(bands or ())
    layout = Counter(t.colour_bands for t in tiles).most_common(1)[0][0]
    dtype = Counter(t.dtype for t in tiles).most_common(1)[0][0]
    chosen = tuple(bands) if bands else layout
    n = len(classes)
    good = []
    for tile in tiles:
        bad = [v for v in tile.values if not (0 <= v < n or v == ignore_index)]
        if bad:
            reason = (f"mask values {', '.join(map(str, bad[:5]))} are not class ids "
                      f"(0..{n - 1}) nor the ignore value {ignore_index}")
        elif bands and max(bands) > tile.count:
            reason = f"image has {tile.count} bands; --bands asks for band {max(bands)}"
        elif not bands and tile.colour_bands != layout:
            reason = (f"image bands {list(tile.colour_bands)} differ from the other tiles' "
                      f"{list(layout)}; choose them with --bands")
        elif tile.dtype != dtype:
            reason = f"image is {tile.dtype}, the other tiles {dtype}"
        else:
            good.append(tile)
            continue
        problems.append(PairProblem(tile.pair.name, reason))
    return good, problems, chosen


def settle_problems(problems: Sequence[PairProblem], skip_bad: bool, source: str,
                    warn) -> None:
    """Stop with one error, or (``skip_bad``) warn once, however many pairs are bad.

    Both say how many, name the first :data:`SHOWN_PROBLEMS`, and point to
    ``-v``, which logs every one of them.
    """
    if not problems:
        return
    for problem in problems:
        log.info("%s %s", "skipping" if skip_bad else "cannot use", problem)
    listed = "; ".join(map(str, problems[:SHOWN_PROBLEMS]))
    if len(problems) > SHOWN_PROBLEMS:
        listed += (f"; and {len(problems) - SHOWN_PROBLEMS} more ('glnet -v train ...' "
                   "lists them all)")
    if skip_bad:
        warn(f"{source}: skipping {len(problems)} tile pair(s) that cannot be used: {listed}")
        return
    raise DataError(f"{source}: {len(problems)} tile pair(s) cannot be used (fix them, or "
                    f"skip them with --skip-bad): {listed}")


# -- input scaling ------------------------------------------------------------

def measure_scaling(tiles: Sequence[TileInfo], bands: Sequence[int],
                    budget: int = 4_000_000) -> InputScaling:
    """uint8: the reference's fixed 0..1; else the 2nd..98th percentile of each band.

    The statistics come from pixels sampled on a coarse grid (about ``budget``
    in all; sampled, not averaged, so that the spread of values stays true),
    leaving out the pixels that ``segment`` finds invalid.
    """
    dtype = tiles[0].dtype
    if dtype == "uint8":
        return InputScaling.fixed("uint8", len(bands))
    side = int(max(16, min(512, math.sqrt(budget / len(tiles)))))
    samples = []
    for tile in tiles:
        with SceneReader.of_tile(tile.pair.image, bands) as reader:
            patch = reader.read_sampled(Box(0, 0, tile.height, tile.width),
                                        (min(tile.height, side), min(tile.width, side)))
        samples.append(patch.data[:, patch.valid])
    values = np.concatenate(samples, axis=1)
    low, high = [], []
    for band in values:
        valid = band.astype(np.float64)
        lo, hi = np.percentile(valid, [2, 98]) if valid.size else (0.0, 1.0)
        low.append(float(lo))
        high.append(float(hi))
    log.info("input scaling from %d tiles: low %s, high %s", len(tiles), low, high)
    return InputScaling.from_stats(dtype, low, high)
