"""How often each class occurs in the training tiles, and what follows from it.

Rare classes are what short runs fail on: a model that paints everything
with the majority class scores well on pixel accuracy and zero on the class a
user trained for. The counts here feed the class-frequency table shown before
the first epoch, the loss's class weights (``--class-weights auto``) and the
oversampling of tiles that hold rare classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from glnet_cli.errors import InputError
from glnet_cli.io.raster.read import open_raster
from glnet_cli.io.raster.windows import Box
from glnet_cli.training.tiles import TileInfo, read_labels
from models.losses import class_weights_from_frequencies

#: Masks are counted on a nearest-neighbour sample of at most this side per tile.
SAMPLE_SIDE = 256
#: Classes under this share of the labelled pixels are warned about.
RARE_SHARE = 0.01
#: The largest class weight ``auto`` gives, relative to a class of average frequency.
WEIGHT_CAP = 10.0


@dataclass(frozen=True)
class ClassCounts:
    """Sampled pixel counts: one row per tile, one column per class."""

    per_tile: np.ndarray

    @property
    def pixels(self) -> np.ndarray:
        return self.per_tile.sum(axis=0)

    @property
    def frequencies(self) -> np.ndarray:
        """Each class's share of the labelled pixels (zeros when nothing is labelled)."""
        total = self.pixels.sum()
        return self.pixels / total if total else np.zeros(self.per_tile.shape[1])

    @property
    def tiles_with(self) -> np.ndarray:
        """How many tiles hold each class."""
        return (self.per_tile > 0).sum(axis=0)

    def rare(self, share: float = RARE_SHARE) -> list[int]:
        """Classes present but under ``share`` of the pixels."""
        freq = self.frequencies
        return [c for c in range(len(freq)) if 0 < freq[c] < share]

    def to_dict(self) -> dict:
        return {"pixels": self.pixels.tolist(), "frequencies": self.frequencies.tolist(),
                "tiles_with": self.tiles_with.tolist()}


def count_classes(tiles: Sequence[TileInfo], n_classes: int, colour_classes, ignore_index: int
                  ) -> ClassCounts:
    """Class pixel counts of every tile's mask, read decimated to at most SAMPLE_SIDE."""
    rows = []
    for tile in tiles:
        shape = (min(tile.height, SAMPLE_SIDE), min(tile.width, SAMPLE_SIDE))
        with open_raster(tile.pair.mask) as mask:
            labels = read_labels(mask, tile.colour_mask, colour_classes, ignore_index,
                                 Box(0, 0, tile.height, tile.width), shape)
        rows.append(np.bincount(labels[labels < n_classes].ravel(), minlength=n_classes))
    return ClassCounts(np.array(rows, dtype=np.int64).reshape(len(tiles), n_classes))


def parse_class_weights(spec: str, counts: ClassCounts) -> Optional[np.ndarray]:
    """``auto``, ``none`` or one comma-separated weight per class; None means unweighted."""
    n_classes = counts.per_tile.shape[1]
    if spec == "none" or not counts.pixels.any():
        return None
    if spec == "auto":
        return class_weights_from_frequencies(counts.frequencies, WEIGHT_CAP)
    try:
        weights = np.array([float(v) for v in spec.split(",")])
    except ValueError:
        raise InputError(f"--class-weights {spec}: give auto, none or numbers") from None
    if len(weights) != n_classes or (weights < 0).any() or not np.isfinite(weights).all():
        raise InputError(f"--class-weights {spec}: give {n_classes} weights >= 0, one per class")
    return weights


def tile_weights(counts: ClassCounts, class_weights: np.ndarray) -> np.ndarray:
    """Sampling probabilities of the tiles: higher for tiles that hold rare classes.

    A tile's weight is the largest class weight among the classes it holds,
    so a tile with a class ten times rarer is drawn about three times as often.
    """
    holds = counts.per_tile > 0
    weight = np.where(holds, class_weights[None, :], 0.0).max(axis=1)
    weight = np.where(weight > 0, weight, 1.0)
    return weight / weight.sum()
