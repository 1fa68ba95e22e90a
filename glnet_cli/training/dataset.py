"""The training dataset: tiles read as ``segment`` reads scenes, augmented, in batches.

Tiles are never read whole at full resolution: the global view is a decimated
read, each local crop a window, both through the
:class:`~glnet_cli.io.raster.read.SceneReader` calls, valid masks and input scaling
that inference uses, so that a model is trained on exactly the inputs it is
later run on.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Sequence, TypeVar

import numpy as np
import torch
from rasterio.io import DatasetReader
from torch.utils.data import DataLoader, Dataset

from glnet_cli.classes import IGNORE_INDEX, ClassTable
from glnet_cli.inference.grid import crop_grid, top_lefts
from glnet_cli.io.model.checkpoint import InputScaling
from glnet_cli.io.raster.read import Patch, SceneReader, open_raster
from glnet_cli.io.raster.windows import Box
from glnet_cli.training.augment import Augment
from glnet_cli.training.tiles import TileInfo, loader_generator, read_labels

T = TypeVar("T")

#: Neighbouring local crops share at least this many pixels, as in the reference
#: (crops smaller than 200 pixels share a quarter of their side instead).
MIN_OVERLAP = 50


@dataclass(frozen=True)
class ReadSpec:
    """How tiles become network inputs and labels."""

    bands: tuple[int, ...]
    scaling: InputScaling
    classes: ClassTable
    ignore_index: int
    size_g: int
    size_p: int
    #: Least overlap of neighbouring crops (a quarter of the crop at most).
    crop_overlap: int = MIN_OVERLAP


@dataclass
class Sample:
    """One tile, ready for the network.

    ``label_global`` is the mask at the global view's size (training); ``label``
    the full-resolution mask (validation). Crops are on the augmented tile's
    grid; ``top_lefts`` and ``ratio`` place them as GLNet wants.
    """

    name: str
    shape: tuple[int, int]
    image_global: torch.Tensor
    label_global: Optional[torch.Tensor] = None
    label: Optional[torch.Tensor] = None
    patches: Optional[torch.Tensor] = None
    patch_labels: Optional[torch.Tensor] = None
    boxes: list[Box] = field(default_factory=list)
    top_lefts: list[tuple[float, float]] = field(default_factory=list)
    ratio: tuple[float, float] = (1.0, 1.0)


def required(part: Optional[T], what: str) -> T:
    """A part of a :class:`Sample` (or of what the model computed) that the caller needs.

    Raises:
        ValueError: it is None: the sample was read, or the model prepared, for another use.
    """
    if part is None:
        raise ValueError(f"no {what}: read or prepared for another use")
    return part


class TileDataset(Dataset):
    """Tiles read windowed, with deterministic augmentation.

    Items are keyed ``(epoch, index)``: the augmentation of a tile depends only
    on the seed, the epoch and the index, never on worker processes or on the
    order of reads, so a resumed run sees exactly what an unbroken one would.

    Args:
        tiles: Checked tiles.
        spec: Bands, scaling, classes, sizes.
        crops: Also read the local crops (stages 2 and 3).
        train: Augment and return training labels; else the full mask.
        color_jitter: Random brightness and contrast (training only).
        seed: Base of every random draw.
    """

    def __init__(self, tiles: Sequence[TileInfo], spec: ReadSpec, crops: bool, train: bool,
                 color_jitter: bool = False, seed: int = 0) -> None:
        self.tiles, self.spec, self.crops, self.train = list(tiles), spec, crops, train
        self.color_jitter, self.seed = color_jitter, seed

    def __len__(self) -> int:
        return len(self.tiles)

    def __getitem__(self, key: tuple[int, int] | int) -> Sample:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        tile, spec = self.tiles[index], self.spec
        aug = Augment()
        if self.train:
            rng = np.random.default_rng([self.seed, epoch, index])
            aug = Augment.random(rng, self.color_jitter)
        whole = Box(0, 0, tile.height, tile.width)
        g = (spec.size_g, spec.size_g)
        height, width = aug.shape(tile.height, tile.width)
        with SceneReader.of_tile(tile.pair.image, spec.bands) as image, \
                open_raster(tile.pair.mask) as mask:
            # Shrunk by averaging, as segment shrinks it: GDAL then reads a file's overviews,
            # and the reference's PIL bilinear resize of a whole tile averages too when shrinking.
            view = image.read_decimated(whole, g)
            sample = Sample(tile.pair.name, (height, width), _tensor(
                aug.jitter(aug.apply(network_input(view, spec.scaling)))))
            if self.train:
                sample.label_global = _tensor(aug.apply(
                    self._labels(mask, tile, whole, view.valid, g)))
            else:
                valid = image.read(whole).valid if tile.may_be_invalid else None
                sample.label = _tensor(self._labels(mask, tile, whole, valid))
            if self.crops:
                self._read_crops(sample, image, mask, tile, aug)
        return sample

    def _labels(self, mask: DatasetReader, tile: TileInfo, box: Box,
                valid: Optional[np.ndarray], out_shape: Optional[tuple[int, int]] = None
                ) -> np.ndarray:
        """Class ids of ``box``, ignored where the image's pixels are not ``valid``."""
        spec = self.spec
        labels = read_labels(mask, tile.colour_mask, spec.classes, spec.ignore_index, box,
                             out_shape)
        if valid is not None:
            labels[~valid] = IGNORE_INDEX
        return labels

    def _read_crops(self, sample: Sample, image: SceneReader, mask: DatasetReader,
                    tile: TileInfo, aug: Augment) -> None:
        spec = self.spec
        height, width = sample.shape
        overlap = min(spec.crop_overlap, spec.size_p // 4)
        sample.boxes = crop_grid(height, width, spec.size_p, overlap)
        sample.top_lefts = top_lefts(sample.boxes, height, width)
        sample.ratio = (spec.size_p / height, spec.size_p / width)
        patches, labels = [], []
        for box in sample.boxes:
            source = aug.source_box(box, tile.height, tile.width)
            patch = image.read(source)
            patches.append(aug.jitter(aug.apply(network_input(patch, spec.scaling))))
            if self.train:
                labels.append(aug.apply(self._labels(mask, tile, source, patch.valid)))
        sample.patches = _tensor(np.stack(patches))
        if self.train:
            sample.patch_labels = _tensor(np.stack(labels))


def network_input(patch: Patch, scaling: InputScaling) -> np.ndarray:
    """Scaled float32 (bands, h, w) with invalid pixels 0, as the engine feeds the network."""
    return scaling.apply(patch.data) * patch.valid


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array))


def epoch_batches(n: int, batch_size: int, epoch: int, seed: int, rank: int = 0,
                  world_size: int = 1, shuffle: bool = True,
                  weights: Optional[np.ndarray] = None) -> list[list[tuple[int, int]]]:
    """This rank's batches of ``(epoch, index)`` keys for one epoch.

    The order is a permutation seeded by (seed, epoch), or with ``weights``
    (tile probabilities) ``n`` draws with replacement, so that tiles with rare
    classes come up more often; as ``DistributedSampler`` does, it is padded
    (by repeating its start) to a multiple of the world size and dealt out rank
    by rank, so every rank runs the same number of steps.
    """
    rng = np.random.default_rng([seed, epoch])
    if weights is not None:
        order = rng.choice(n, size=n, p=weights)
    else:
        order = rng.permutation(n) if shuffle else np.arange(n)
    padded = np.resize(order, math.ceil(n / world_size) * world_size)
    mine = [(epoch, int(i)) for i in padded[rank::world_size]]
    return [mine[i:i + batch_size] for i in range(0, len(mine), batch_size)]


def iter_samples(dataset: TileDataset, batches: Sequence[list[Any]], num_workers: int
                 ) -> Iterator[list[Sample]]:
    """Batches of samples, read by ``num_workers`` processes (0: in this one)."""
    loader = DataLoader(dataset, batch_sampler=batches, collate_fn=list,
                        num_workers=num_workers, generator=loader_generator())
    yield from loader


def split_by_name(tiles: Sequence[TileInfo], fraction: float
                  ) -> tuple[list[TileInfo], list[TileInfo]]:
    """A validation split that depends only on the file names.

    The ``ceil(fraction * n)`` tiles whose CRC-32 of the file name is smallest
    go to validation (at least one tile is kept for training): adding or
    removing tiles moves no other tile between the two sets.
    """
    if fraction <= 0 or len(tiles) < 2:
        return list(tiles), []
    count = min(len(tiles) - 1, math.ceil(fraction * len(tiles)))
    ranked = sorted(tiles, key=lambda t: (zlib.crc32(t.pair.name.encode()), t.pair.name))
    val = {t.pair.name for t in ranked[:count]}
    return ([t for t in tiles if t.pair.name not in val], [t for t in tiles if t.pair.name in val])
