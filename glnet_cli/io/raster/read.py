"""Opening and checking input scenes; windowed and decimated reads with valid masks.

Nothing here reads a raster at full resolution in one piece: crops are read
window by window, and global views through ``out_shape``, which GDAL serves
from the file's overviews when it has them. Every read can be recorded
(:attr:`SceneReader.read_log`) so tests can prove it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import warnings
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import rasterio
from rasterio.dtypes import in_dtype_range
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError, RasterioIOError
from rasterio.windows import Window

from glnet_cli.errors import GlnetWarning, InputError, RasterError
from glnet_cli.io.raster.windows import Box

log = logging.getLogger(__name__)

_INTEGER_OR_FLOAT = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")


@dataclass(frozen=True)
class SceneInfo:
    """What the pipeline needs to know about a scene, read once from its header."""

    path: str
    width: int
    height: int
    count: int
    dtype: str
    crs: Optional[rasterio.crs.CRS]
    transform: rasterio.Affine
    nodata: Optional[float]
    bands: tuple[int, ...]
    overviews: tuple[int, ...]
    mask_flags: tuple[str, ...]
    block_shape: tuple[int, int]
    #: ``nodata`` was declared by the user (``--nodata``), not read from the file.
    nodata_declared: bool = False

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def gsd(self) -> Optional[float]:
        """Pixel size in CRS units (None without a projected CRS)."""
        if self.crs is None or self.crs.is_geographic:
            return None
        return math.hypot(self.transform.a, self.transform.d)


def open_raster(path: str | os.PathLike) -> rasterio.io.DatasetReader:
    """Open ``path`` with rasterio, or fail with one line naming the file.

    Raises:
        InputError: The file does not exist (or is a folder).
        RasterError: It exists but GDAL cannot read it as a raster.
    """
    path = os.fspath(path)
    remote = "://" in path or path.startswith("/vsi")
    if not remote and not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a folder, not a raster")
    try:
        with warnings.catch_warnings():
            # A missing georeference is judged (and warned about) where it matters.
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioIOError as exc:
        detail = _first_line(exc).replace(f"'{path}' ", "").replace(path, "the file")
        raise RasterError(f"{path}: not a raster GDAL can read ({detail})") from None


#: GDAL's block cache while segment streams a scene (MB): room for the blocks that
#: neighbouring crops read again.
BLOCK_CACHE_MB = 64
#: ... and while a command reads each block once (vectorize's disjoint windows).
SINGLE_PASS_CACHE_MB = 1


def bounded_block_cache(megabytes: int = BLOCK_CACHE_MB) -> contextlib.AbstractContextManager:
    """Cap GDAL's block cache at ``megabytes`` unless the user set one.

    By default GDAL keeps every block it reads or writes, up to 5% of RAM, so a
    streaming run's memory would grow with the raster for no gain. Too small a
    cache costs as much: overlapping crops would decode, or fetch over HTTP,
    the same blocks again.
    """
    if "GDAL_CACHEMAX" in os.environ or (rasterio.env.hasenv()
                                         and "GDAL_CACHEMAX" in rasterio.env.getenv()):
        return contextlib.nullcontext()
    # In bytes: rasterio hands the number to GDALSetCacheMax64 as it is.
    return rasterio.Env(GDAL_CACHEMAX=megabytes * 2 ** 20)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def inspect_scene(path: str | os.PathLike, bands: Optional[Sequence[int]] = None,
                  needed_bands: Optional[int] = None,
                  nodata: Optional[float] = None) -> SceneInfo:
    """Open ``path``, check it and choose its bands; refuse what cannot be segmented.

    ``bands`` are 1-based band numbers in the order the model expects them; by
    default the first ``needed_bands`` bands. A scene without a CRS is kept
    (with a warning): its output gets the same transform and no CRS.
    ``nodata`` declares the scene's nodata value (NaN allowed) for a file that
    lacks one, as rio's ``--nodata``; it replaces the file's own nodata, while
    an alpha band or mask band still applies.
    """
    path = os.fspath(path)
    with open_raster(path) as src:
        if src.count == 0:
            raise RasterError(f"{path}: has no bands")
        if src.dtypes[0] not in _INTEGER_OR_FLOAT:
            raise RasterError(f"{path}: data type {src.dtypes[0]} cannot be segmented")
        chosen = _choose_bands(path, src.count, bands, needed_bands)
        if nodata is not None:
            _check_nodata(path, nodata, src.dtypes[chosen[0] - 1])
        if src.crs is None:
            warnings.warn(f"{path}: has no CRS; the mask keeps its transform but has no CRS",
                          GlnetWarning, stacklevel=2)
        return scene_info(path, src, chosen, nodata)


def scene_info(path: str, src: rasterio.io.DatasetReader, bands: Sequence[int],
               nodata: Optional[float] = None) -> SceneInfo:
    """What a :class:`SceneReader` of ``bands`` of the open ``src`` needs; checks nothing.

    ``nodata``, when given, is declared: it replaces the file's own (see :func:`inspect_scene`).
    """
    flags = tuple(",".join(f.name for f in src.mask_flag_enums[b - 1]) for b in bands)
    return SceneInfo(
        path=path, width=src.width, height=src.height, count=src.count,
        dtype=src.dtypes[bands[0] - 1], crs=src.crs, transform=src.transform,
        nodata=src.nodata if nodata is None else nodata, bands=tuple(bands),
        overviews=tuple(src.overviews(bands[0])), mask_flags=flags,
        block_shape=tuple(src.block_shapes[bands[0] - 1]),
        nodata_declared=nodata is not None)


def _check_nodata(path: str, nodata: float, dtype: str) -> None:
    """A declared nodata must be a value of the data type, or no pixel could ever match it."""
    if not in_dtype_range(nodata, dtype) or (np.dtype(dtype).kind in "iu"
                                             and nodata != int(nodata)):
        raise RasterError(f"{path}: nodata {nodata:g} is not a {dtype} value; "
                          f"declare one its data type can hold")


def _choose_bands(path: str, count: int, bands: Optional[Sequence[int]],
                  needed: Optional[int]) -> list[int]:
    if bands:
        bad = [b for b in bands if b > count]
        if bad:
            raise RasterError(f"{path}: has {count} band(s); band {bad[0]} does not exist")
        if needed is not None and len(bands) != needed:
            raise RasterError(f"{path}: --bands selects {len(bands)} band(s), "
                              f"the model needs {needed}")
        return list(bands)
    if needed is None:
        return list(range(1, count + 1))
    if count < needed:
        raise RasterError(f"{path}: has {count} band(s), the model needs {needed} "
                          "(choose them with --bands, e.g. --bands 1,1,1)")
    if count > needed:
        log.info("%s: using bands 1..%d of %d (choose others with --bands)", path, needed, count)
    return list(range(1, needed + 1))


@dataclass
class Patch:
    """Pixels of one box: raw values (bands, h, w) and validity (h, w), zero-padded."""

    data: np.ndarray
    valid: np.ndarray


class SceneReader:
    """Windowed and decimated reads of one scene's chosen bands.

    Boxes may reach past the scene's edge (a scene smaller than one crop, a
    padded block): what lies outside is read as invalid zeros. Use one reader
    per thread: GDAL dataset handles are not shared across threads.
    """

    def __init__(self, info: SceneInfo, record: bool = False) -> None:
        self.info = info
        self._src = open_raster(info.path)
        self.read_log: Optional[list[tuple[Window, tuple[int, int]]]] = [] if record else None
        # A declared nodata replaces the file's, so GDAL's mask counts only when it comes
        # from an alpha or mask band; one that GDAL knows to be all valid is not read.
        self._file_mask = (not info.nodata_declared or any(
            "per_dataset" in flags or "alpha" in flags for flags in info.mask_flags)) and any(
            flags != "all_valid" for flags in info.mask_flags)

    @classmethod
    def of_tile(cls, path: str, bands: Sequence[int]) -> "SceneReader":
        """A reader of a training tile, valid where ``segment`` without --nodata finds it valid.

        The tile's own nodata, alpha or mask band applies; the tile was checked
        before (so nothing is checked, nor warned about, again).
        """
        with open_raster(path) as src:
            return cls(scene_info(path, src, bands))

    def close(self) -> None:
        self._src.close()

    def __enter__(self) -> "SceneReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, box: Box) -> Patch:
        """Full-resolution pixels of ``box``."""
        return self._read(box, (box.height, box.width), Resampling.nearest)

    def read_decimated(self, box: Box, shape: tuple[int, int]) -> Patch:
        """``box`` resampled to ``shape`` (averaging; GDAL uses overviews when it can)."""
        return self._read(box, shape, Resampling.average)

    def read_sampled(self, box: Box, shape: tuple[int, int]) -> Patch:
        """Pixels of ``box`` picked (nearest) on a ``shape`` grid: true values, for statistics."""
        return self._read(box, shape, Resampling.nearest)

    def _read(self, box: Box, shape: tuple[int, int], resampling: Resampling) -> Patch:
        scene = Box(0, 0, self.info.height, self.info.width)
        inside = box.intersection(scene)
        data = np.zeros((len(self.info.bands),) + tuple(shape), dtype=self.info.dtype)
        valid = np.zeros(shape, dtype=bool)
        if inside is None:
            return Patch(data, valid)
        # Where the part inside the scene lands in the output array.
        sy, sx = shape[0] / box.height, shape[1] / box.width
        y0, x0 = int(round((inside.row - box.row) * sy)), int(round((inside.col - box.col) * sx))
        y1 = int(round((inside.bottom - box.row) * sy))
        x1 = int(round((inside.right - box.col) * sx))
        if y1 <= y0 or x1 <= x0:
            return Patch(data, valid)
        window = inside.window
        out_shape = (y1 - y0, x1 - x0)
        if self.read_log is not None:
            self.read_log.append((window, out_shape))
        try:
            pixels = self._src.read(list(self.info.bands), window=window,
                                    out_shape=(len(self.info.bands),) + out_shape,
                                    resampling=resampling)
            ok = np.ones(out_shape, dtype=bool)
            if self._file_mask:
                masks = self._src.read_masks(list(self.info.bands), window=window,
                                             out_shape=(len(self.info.bands),) + out_shape,
                                             resampling=Resampling.nearest)
                ok = (masks > 0).any(axis=0)
        except (RasterioError, OSError) as exc:
            raise RasterError(f"{self.info.path}: reading rows {inside.row}-{inside.bottom}, "
                              f"columns {inside.col}-{inside.right} failed "
                              f"({_first_line(exc)})") from None
        nodata = self.info.nodata
        if self.info.nodata_declared and nodata is not None and not math.isnan(nodata):
            # As GDAL's nodata mask: a pixel counts when any chosen band differs.
            ok &= (pixels != nodata).any(axis=0)
        if pixels.dtype.kind == "f":
            ok &= np.isfinite(pixels).all(axis=0)
            pixels = np.where(np.isfinite(pixels), pixels, 0)
        if (y0, x0, y1, x1) == (0, 0) + tuple(shape):  # the whole box: no padding to add
            return Patch(pixels.astype(data.dtype, copy=False), ok)
        data[:, y0:y1, x0:x1] = pixels
        valid[y0:y1, x0:x1] = ok
        return Patch(data, valid)
