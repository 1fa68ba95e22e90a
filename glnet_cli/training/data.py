"""Training data: tile pairs, their checks, windowed reads, labels and augmentation.

A tile folder holds image/mask pairs in one of two layouts: ``images/`` and
``masks/`` sub-folders with matching file names, or DeepGlobe's ``*_sat.jpg``
beside ``*_mask.png``. Every pair is checked before training starts, so a bad
file fails the run in seconds rather than hours in. Tiles are never read whole
for training: the global view is a decimated read, each local crop a window.
"""

from __future__ import annotations

import logging
import math
import os
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import torch
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.errors import RasterioError
from rasterio.io import DatasetReader
from torch.utils.data import DataLoader, Dataset

from glnet_cli.classes import IGNORE_INDEX, ClassTable, generic_table
from glnet_cli.errors import DataError, GlnetError, InputError, RasterError
from glnet_cli.inference.grid import crop_grid, top_lefts
from glnet_cli.io.windows import Box, iter_windows
from glnet_cli.io.checkpoint import InputScaling
from glnet_cli.io.raster import open_raster

log = logging.getLogger(__name__)

#: File types read as tiles (GDAL reads PNG and JPEG as well as GeoTIFF).
TILE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
#: Neighbouring local crops share at least this many pixels, as in the reference
#: (crops smaller than 200 pixels share a quarter of their side instead).
MIN_OVERLAP = 50
_STRIP = 1024
#: Bad pairs named in the one error or warning about them; -v logs them all.
SHOWN_PROBLEMS = 3


@dataclass(frozen=True)
class TilePair:
    """An image and its mask; ``name`` is the image's file name (used in messages)."""

    name: str
    image: str
    mask: str


@dataclass(frozen=True)
class PairProblem:
    """Why a pair (or a lone file) cannot be used."""

    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


class _PairError(Exception):
    """Internal: one pair failed a check."""


@dataclass(frozen=True)
class TileInfo:
    """What the check learned about a usable pair."""

    pair: TilePair
    height: int
    width: int
    count: int
    dtype: str
    #: Bands that are not alpha, 1-based: the default input bands.
    colour_bands: tuple[int, ...]
    colour_mask: bool
    #: Class ids found in the mask (raw values for index masks).
    values: tuple[int, ...]
    #: Whether the image marks pixels as invalid (nodata, alpha, mask band).
    has_mask: bool
    gsd: Optional[float] = None

    @property
    def name(self) -> str:
        return self.pair.name


# -- discovery ----------------------------------------------------------------

def _tiles_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".")
                  and p.suffix.lower() in TILE_SUFFIXES)


def _by_key(paths: Sequence[Path], key_of) -> tuple[dict[str, Path], list[PairProblem]]:
    found: dict[str, Path] = {}
    problems = []
    for path in paths:
        key = key_of(path)
        if key is None:
            continue
        if key in found:
            problems.append(PairProblem(path.name, f"same name as {found[key].name}; "
                                                   "keep one of them"))
            continue
        found[key] = path
    return found, problems


def _strip_suffix(tag: str):
    def key_of(path: Path) -> Optional[str]:
        stem = path.stem
        return stem[: -len(tag)] if stem.endswith(tag) else None
    return key_of


def discover_tiles(folder: str | os.PathLike) -> tuple[list[TilePair], list[PairProblem]]:
    """Find the image/mask pairs of a tile folder, and the files without a partner.

    Raises:
        InputError: The folder does not exist or holds neither layout.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{folder}: no such folder (give a folder of tiles with --tiles)")
    if (root / "images").is_dir() and (root / "masks").is_dir():
        images, p1 = _by_key(_tiles_in(root / "images"), lambda p: p.stem)
        masks, p2 = _by_key(_tiles_in(root / "masks"), lambda p: p.stem)
    else:
        files = _tiles_in(root)
        images, p1 = _by_key(files, _strip_suffix("_sat"))
        masks, p2 = _by_key(files, _strip_suffix("_mask"))
        if not images and not masks:
            raise InputError(
                f"{folder}: no tiles found; expected {folder}/images + {folder}/masks "
                "with matching names, or DeepGlobe-style *_sat.jpg with *_mask.png")
    problems = p1 + p2
    problems += [PairProblem(images[k].name, "image has no mask") for k in images if k not in masks]
    problems += [PairProblem(masks[k].name, "mask has no image") for k in masks if k not in images]
    pairs = [TilePair(images[k].name, str(images[k]), str(masks[k]))
             for k in sorted(images) if k in masks]
    return pairs, problems


# -- reading ------------------------------------------------------------------

def read_labels(src: DatasetReader, colour: bool, classes: ClassTable, ignore_index: int,
                box: Box, out_shape: Optional[tuple[int, int]] = None) -> np.ndarray:
    """Class ids (uint8, 255 = ignore) of a mask window, optionally decimated (nearest)."""
    bands = [1, 2, 3] if colour else [1]
    shape = None if out_shape is None else (len(bands), *out_shape)
    raw = src.read(bands, window=box.window, out_shape=shape, resampling=Resampling.nearest)
    if colour:
        return classes.colors_to_index(raw, os.path.basename(src.name))
    raw = raw[0]
    return np.where(raw == ignore_index, IGNORE_INDEX, raw).astype(np.uint8)


def read_image(src: DatasetReader, bands: Sequence[int], scaling: InputScaling, box: Box,
               out_shape: Optional[tuple[int, int]] = None) -> np.ndarray:
    """Scaled float32 (bands, h, w) of an image window; decimated reads are bilinear."""
    shape = None if out_shape is None else (len(bands), *out_shape)
    raw = src.read(list(bands), window=box.window, out_shape=shape,
                   resampling=Resampling.bilinear)
    return scaling.apply(raw)


def _invalid(src: DatasetReader, box: Box,
             out_shape: Optional[tuple[int, int]] = None) -> np.ndarray:
    return src.dataset_mask(window=box.window, out_shape=out_shape) == 0


# -- checks -------------------------------------------------------------------

def _has_mask(src: DatasetReader) -> bool:
    return any(MaskFlags.all_valid not in flags for flags in src.mask_flag_enums)


def _georef_problem(image: DatasetReader, mask: DatasetReader) -> Optional[str]:
    """Both georeferenced and not on the same grid: the labels would be misplaced."""
    if image.crs is None or mask.crs is None:
        return None
    if image.crs != mask.crs:
        return f"mask CRS {mask.crs} differs from the image's {image.crs}"
    if not image.transform.almost_equals(mask.transform, precision=1e-9):
        return "mask transform differs from the image's (not on the same pixel grid)"
    return None


def _mask_values(src: DatasetReader, colour: bool, classes: Optional[ClassTable]) -> set[int]:
    """Every value of a mask, read strip by strip so that a huge mask needs little memory."""
    if colour and classes is None:
        raise _PairError("mask is colour-coded (RGB); give its class table with --classes")
    values: set[int] = set()
    for box in iter_windows(src.height, src.width, _STRIP):
        if colour:
            ids = read_labels(src, True, classes, IGNORE_INDEX, box)
            values.update(np.unique(ids).tolist())
        else:
            values.update(np.unique(src.read(1, window=box.window)).tolist())
    return values


def inspect_pair(pair: TilePair, classes: Optional[ClassTable], min_size: int = 1) -> TileInfo:
    """Read a pair once: sizes, georeferencing, band layout, every mask value.

    Raises:
        _PairError: With the reason the pair cannot be used.
    """
    try:
        with open_raster(pair.image) as image, open_raster(pair.mask) as mask:
            if (image.height, image.width) != (mask.height, mask.width):
                raise _PairError(f"mask is {mask.width}x{mask.height} pixels, "
                                 f"image {image.width}x{image.height}")
            georef = _georef_problem(image, mask)
            if georef:
                raise _PairError(georef)
            if min(image.height, image.width) < min_size:
                raise _PairError(f"tile is {image.width}x{image.height} pixels, smaller than "
                                 f"a local crop ({min_size}); use a smaller --size-p")
            if mask.count not in (1, 3, 4):
                raise _PairError(f"mask has {mask.count} bands; expected 1 (class ids) "
                                 "or 3 (RGB colours)")
            colour = mask.count >= 3
            # A small decimated read decodes the whole file: a truncated image fails here.
            image.read(1, out_shape=(min(image.height, 64), min(image.width, 64)))
            values = _mask_values(mask, colour, classes)
            bands = tuple(i for i, ci in zip(image.indexes, image.colorinterp)
                          if ci != ColorInterp.alpha)
            gsd = abs(image.transform.a) if image.crs is not None else None
            return TileInfo(pair, image.height, image.width, image.count, image.dtypes[0],
                            bands, colour, tuple(sorted(values)), _has_mask(image), gsd)
    except (RasterioError, OSError) as exc:
        raise _PairError(f"cannot read ({str(exc).splitlines()[0] if str(exc) else exc})") \
            from None
    except RasterError as exc:  # opening failed: "<path>: <problem>"
        raise _PairError(f"cannot read ({str(exc).split(': ', 1)[-1]})") from None
    except GlnetError as exc:  # an unknown colour, from the class table
        raise _PairError(str(exc)) from None


class _InspectAll(Dataset):
    """Pairs to check, as a dataset so that DataLoader workers check them in parallel."""

    def __init__(self, pairs: Sequence[TilePair], classes: Optional[ClassTable],
                 min_size: int) -> None:
        self.pairs, self.classes, self.min_size = pairs, classes, min_size

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> TileInfo | PairProblem:
        pair = self.pairs[index]
        try:
            return inspect_pair(pair, self.classes, self.min_size)
        except _PairError as exc:
            return PairProblem(pair.name, str(exc))


def inspect_pairs(pairs: Sequence[TilePair], classes: Optional[ClassTable], min_size: int = 1,
                  num_workers: int = 0) -> list[TileInfo | PairProblem]:
    """:func:`inspect_pair` for every pair, in order, with ``num_workers`` processes."""
    loader = DataLoader(_InspectAll(pairs, classes, min_size), batch_size=None,
                        num_workers=num_workers, generator=_loader_generator())
    return list(loader)


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


# -- splitting and statistics -------------------------------------------------

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


def measure_scaling(tiles: Sequence[TileInfo], bands: Sequence[int],
                    budget: int = 4_000_000) -> InputScaling:
    """uint8: the reference's fixed 0..1; else the 2nd..98th percentile of each band.

    The statistics come from decimated reads (about ``budget`` pixels in all),
    leaving out nodata.
    """
    dtype = tiles[0].dtype
    if dtype == "uint8":
        return InputScaling.fixed("uint8", len(bands))
    side = int(max(16, min(512, math.sqrt(budget / len(tiles)))))
    samples = []
    for tile in tiles:
        with open_raster(tile.pair.image) as src:
            shape = (len(bands), min(tile.height, side), min(tile.width, side))
            data = src.read(list(bands), out_shape=shape, masked=True)
        samples.append(data.reshape(len(bands), -1))
    values = np.ma.concatenate(samples, axis=1)
    low, high = [], []
    for band in values:
        valid = band.compressed().astype(np.float64)
        lo, hi = np.percentile(valid, [2, 98]) if valid.size else (0.0, 1.0)
        low.append(float(lo))
        high.append(float(hi))
    log.info("input scaling from %d tiles: low %s, high %s", len(tiles), low, high)
    return InputScaling.from_stats(dtype, low, high)


# -- augmentation -------------------------------------------------------------

@dataclass(frozen=True)
class Augment:
    """A flip, quarter turns and an optional brightness/contrast change of one tile.

    The geometric part is applied to whole-tile views and to crops alike: a crop
    is placed on the grid of the *augmented* tile, :meth:`source_box` says which
    window of the file holds it, and :meth:`apply` turns that window.
    """

    flip: bool = False
    #: Counter-clockwise quarter turns, as ``np.rot90``.
    turns: int = 0
    gain: float = 1.0
    bias: float = 0.0

    @classmethod
    def random(cls, rng: np.random.Generator, color_jitter: bool = False) -> "Augment":
        flip, turns = bool(rng.integers(2)), int(rng.integers(4))
        if not color_jitter:
            return cls(flip, turns)
        return cls(flip, turns, float(rng.uniform(0.8, 1.2)), float(rng.uniform(-0.1, 0.1)))

    def shape(self, height: int, width: int) -> tuple[int, int]:
        return (width, height) if self.turns % 2 else (height, width)

    def apply(self, array: np.ndarray) -> np.ndarray:
        """Flip then turn the last two axes."""
        if self.flip:
            array = array[..., ::-1]
        return np.ascontiguousarray(np.rot90(array, self.turns, axes=(-2, -1)))

    def jitter(self, image: np.ndarray) -> np.ndarray:
        return image if (self.gain, self.bias) == (1.0, 0.0) else image * self.gain + self.bias

    def source_box(self, box: Box, height: int, width: int) -> Box:
        """The window of the (``height`` x ``width``) file that becomes ``box`` once applied."""
        for turn in reversed(range(self.turns)):
            # rot90 maps in[j, W - 1 - i] to out[i, j], W the width before this turn.
            before_width = height if turn % 2 else width
            box = Box(box.col, before_width - box.row - box.height, box.width, box.height)
        if self.flip:
            box = Box(box.row, width - box.col - box.width, box.height, box.width)
        return box


# -- the dataset --------------------------------------------------------------

@dataclass(frozen=True)
class ReadSpec:
    """How tiles become network inputs and labels."""

    bands: tuple[int, ...]
    scaling: InputScaling
    classes: ClassTable
    ignore_index: int
    size_g: int
    size_p: int


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
        with open_raster(tile.pair.image) as image, open_raster(tile.pair.mask) as mask:
            sample = Sample(tile.pair.name, (height, width), _tensor(
                aug.jitter(aug.apply(read_image(image, spec.bands, spec.scaling, whole, g)))))
            if self.train:
                sample.label_global = _tensor(aug.apply(self._labels(image, mask, tile, whole, g)))
            else:
                sample.label = _tensor(self._labels(image, mask, tile, whole))
            if self.crops:
                self._read_crops(sample, image, mask, tile, aug)
        return sample

    def _labels(self, image: DatasetReader, mask: DatasetReader, tile: TileInfo, box: Box,
                out_shape: Optional[tuple[int, int]] = None) -> np.ndarray:
        spec = self.spec
        labels = read_labels(mask, tile.colour_mask, spec.classes, spec.ignore_index, box,
                             out_shape)
        if tile.has_mask:
            labels[_invalid(image, box, out_shape)] = IGNORE_INDEX
        return labels

    def _read_crops(self, sample: Sample, image: DatasetReader, mask: DatasetReader,
                    tile: TileInfo, aug: Augment) -> None:
        spec = self.spec
        height, width = sample.shape
        sample.boxes = crop_grid(height, width, spec.size_p, min(MIN_OVERLAP, spec.size_p // 4))
        sample.top_lefts = top_lefts(sample.boxes, height, width)
        sample.ratio = (spec.size_p / height, spec.size_p / width)
        patches, labels = [], []
        for box in sample.boxes:
            source = aug.source_box(box, tile.height, tile.width)
            patches.append(aug.jitter(aug.apply(
                read_image(image, spec.bands, spec.scaling, source))))
            if self.train:
                labels.append(aug.apply(self._labels(image, mask, tile, source)))
        sample.patches = _tensor(np.stack(patches))
        if self.train:
            sample.patch_labels = _tensor(np.stack(labels))


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array))


def epoch_batches(n: int, batch_size: int, epoch: int, seed: int, rank: int = 0,
                  world_size: int = 1, shuffle: bool = True) -> list[list[tuple[int, int]]]:
    """This rank's batches of ``(epoch, index)`` keys for one epoch.

    The order is a permutation seeded by (seed, epoch); as ``DistributedSampler``
    does, it is padded (by repeating its start) to a multiple of the world size
    and dealt out rank by rank, so every rank runs the same number of steps.
    """
    order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
    padded = np.resize(order, math.ceil(n / world_size) * world_size)
    mine = [(epoch, int(i)) for i in padded[rank::world_size]]
    return [mine[i:i + batch_size] for i in range(0, len(mine), batch_size)]


def iter_samples(dataset: TileDataset, batches: Sequence[Sequence], num_workers: int
                 ) -> Iterator[list[Sample]]:
    """Batches of samples, read by ``num_workers`` processes (0: in this one)."""
    loader = DataLoader(dataset, batch_sampler=batches, collate_fn=list,
                        num_workers=num_workers, generator=_loader_generator())
    yield from loader


def _loader_generator() -> torch.Generator:
    """Worker seeds from a generator of their own: reading data never moves torch's global RNG."""
    return torch.Generator().manual_seed(0)
