"""Training tiles: discovery, pairing, and the checks of each pair.

A tile folder holds image/mask pairs in one of two layouts: ``images/`` and
``masks/`` sub-folders with matching file names, or DeepGlobe's ``*_sat.jpg``
beside ``*_mask.png``. Every pair is checked before training starts, so a bad
file fails the run in seconds rather than hours in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.errors import RasterioError
from rasterio.io import DatasetReader
from torch.utils.data import DataLoader, Dataset

from glnet_cli.classes import IGNORE_INDEX, ClassTable
from glnet_cli.errors import GlnetError, InputError, RasterError
from glnet_cli.io.raster.read import open_raster
from glnet_cli.io.raster.windows import Box, iter_windows

#: File types read as tiles (GDAL reads PNG and JPEG as well as GeoTIFF).
TILE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
_STRIP = 1024


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

    @property
    def may_be_invalid(self) -> bool:
        """Whether some pixels may be invalid: masked, or not finite (NaN) in a float image."""
        return self.has_mask or np.dtype(self.dtype).kind == "f"


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


# -- labels -------------------------------------------------------------------

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
        if colour and classes is not None:  # (raised above without classes)
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
                        num_workers=num_workers, generator=loader_generator())
    return list(loader)


def loader_generator() -> torch.Generator:
    """Worker seeds from a generator of their own: reading data never moves torch's global RNG."""
    return torch.Generator().manual_seed(0)
