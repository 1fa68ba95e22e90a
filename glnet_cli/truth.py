"""Ground truth for ``glnet evaluate``, read on the prediction's grid one window at a time.

Three kinds of truth are understood:

* a raster of class ids (one band; its nodata or mask becomes the ignore value),
* an RGB colour-coded raster (three bands or more), decoded with a class table,
* a vector file (anything fiona reads), rasterised window by window.

A truth on another grid is resampled (rasters, nearest neighbour) or
reprojected (vectors) onto the prediction's grid, so that the two can be read
window for window. Whatever the kind, a reader returns class ids with
:data:`~glnet_cli.classes.IGNORE_INDEX` where there is no label.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from typing import Callable, Iterator, Optional

import fiona
import numpy as np
import shapely
from fiona.errors import FionaError
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, Resampling
from rasterio.features import rasterize
from rasterio.io import DatasetReader
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds, transform_geom
from rasterio.windows import Window
from rasterio.windows import bounds as window_bounds

from glnet_cli.classes import IGNORE_INDEX, ClassTable
from glnet_cli.errors import GlnetWarning, InputError, RasterError
from glnet_cli.raster import open_raster

log = logging.getLogger(__name__)

#: Reads the truth of one window of the prediction's grid as class ids.
TruthReader = Callable[[Window], np.ndarray]


@contextlib.contextmanager
def open_truth(path: str | os.PathLike, pred: DatasetReader, *,
               table: Optional[ClassTable] = None, attribute: Optional[str] = None,
               background: int = 0) -> Iterator[TruthReader]:
    """Yield a reader of the truth at ``path`` on ``pred``'s grid.

    Args:
        path: A raster (class ids or RGB colours) or a vector file.
        pred: The open prediction, whose grid the truth is read on.
        table: Decodes RGB colour-coded truth; required for it.
        attribute: Vector truth: the integer field holding the class id.
            Without it every feature is class 1.
        background: Vector truth: the class of pixels no feature covers.

    Raises:
        InputError: The file is missing, neither a raster nor a vector file,
            cannot be put on the prediction's grid, or does not overlap it.
    """
    path = os.fspath(path)
    try:
        src = open_raster(path)
    except RasterError:  # not a raster: try it as a vector file
        src = None
    if src is None:
        yield _vector_reader(path, pred, attribute, background)
        return
    with src, contextlib.ExitStack() as stack:
        yield _raster_reader(_on_grid(src, pred, path, stack), src.count, path, table)


def _raster_reader(src: DatasetReader | WarpedVRT, count: int, path: str,
                   table: Optional[ClassTable]) -> TruthReader:
    dtype = np.dtype(src.dtypes[0])
    if not np.issubdtype(dtype, np.integer):
        raise InputError(f"{path}: truth is {dtype}; expected integer class ids "
                         "or an RGB colour-coded mask")
    colour_coded = count >= 3
    if colour_coded and table is None:
        raise InputError(f"{path}: has {count} bands, so it looks colour-coded; "
                         "give --classes to decode its colours")

    def read(window: Window) -> np.ndarray:
        labelled = src.dataset_mask(window=window) > 0
        if colour_coded:
            rgb = src.read([1, 2, 3], window=window)
            out = np.full(labelled.shape, IGNORE_INDEX, dtype=np.uint8)
            out[labelled] = table.colors_to_index(rgb[:, labelled], source=path)
            return out
        out = src.read(1, window=window).astype(np.int32)
        out[~labelled] = IGNORE_INDEX
        return out

    return read


def _on_grid(src: DatasetReader, pred: DatasetReader, path: str,
             stack: contextlib.ExitStack) -> DatasetReader | WarpedVRT:
    """``src`` itself when it is on the prediction's grid, else a nearest-neighbour warp onto it."""
    # A truth with no georeferencing at all (a PNG) is taken as pixel-aligned.
    aligned = src.transform.almost_equals(pred.transform) or (
        not src.crs and src.transform.is_identity)
    if src.shape == pred.shape and aligned and (src.crs == pred.crs or not src.crs
                                                or not pred.crs):
        if src.crs != pred.crs:
            _warn_no_crs(path)
        return src
    if not src.crs or not pred.crs:
        raise InputError(f"{path}: its grid differs from the prediction {pred.name} and a CRS "
                         "is missing, so it cannot be resampled onto the prediction's grid")
    _check_overlap(path, src.crs, src.bounds, pred)
    warnings.warn(f"{path}: its grid (CRS, transform or size) differs from the prediction "
                  f"{pred.name}; resampling it onto the prediction's grid (nearest neighbour)",
                  GlnetWarning, stacklevel=2)
    # An alpha band marks the pixels the truth does not cover as unlabelled.
    return stack.enter_context(WarpedVRT(
        src, crs=pred.crs, transform=pred.transform, width=pred.width, height=pred.height,
        resampling=Resampling.nearest, add_alpha=ColorInterp.alpha not in src.colorinterp))


def _warn_no_crs(path: str) -> None:
    warnings.warn(f"{path}: it or the prediction has no CRS; assuming both are on the "
                  "prediction's", GlnetWarning, stacklevel=3)


def _check_overlap(path: str, crs: Optional[CRS], bounds: tuple[float, float, float, float],
                   pred: DatasetReader) -> None:
    """Refuse a truth whose bounds (in ``crs``; None: the prediction's) miss the prediction's."""
    left, bottom, right, top = bounds if crs is None else transform_bounds(crs, pred.crs, *bounds)
    p = pred.bounds
    if left >= p.right or right <= p.left or bottom >= p.top or top <= p.bottom:
        raise InputError(
            f"{path}: does not overlap the prediction {pred.name} (truth bounds "
            f"{left:.6g}, {bottom:.6g}, {right:.6g}, {top:.6g}; prediction bounds "
            f"{p.left:.6g}, {p.bottom:.6g}, {p.right:.6g}, {p.top:.6g} in {pred.crs})")


def _vector_reader(path: str, pred: DatasetReader, attribute: Optional[str],
                   background: int) -> TruthReader:
    try:
        layer = fiona.open(path)
    except (FionaError, OSError):
        raise InputError(f"{path}: neither a raster nor a vector file GDAL can read") from None
    with layer:
        fields = list(layer.schema["properties"])
        if attribute is not None and attribute not in fields:
            raise InputError(f"{path}: no attribute {attribute!r}; its fields are: "
                             f"{', '.join(fields) or '(none)'}")
        # The CRS to reproject from; None when the features are on the prediction's.
        crs = CRS.from_wkt(layer.crs_wkt) if layer.crs_wkt else None
        if not crs or not pred.crs:
            _warn_no_crs(path)
            crs = None
        elif crs == pred.crs:
            crs = None
        shapes = [(shapely.geometry.shape(geom if crs is None else
                                          transform_geom(crs, pred.crs, geom)), value)
                  for geom, value in _features(layer, path, attribute)]
        bounds = layer.bounds
    if shapes:
        _check_overlap(path, crs, bounds, pred)
    log.info("%s: %d features to rasterise", path, len(shapes))
    tree = shapely.STRtree([geom for geom, _ in shapes])

    def read(window: Window) -> np.ndarray:
        hits = tree.query(shapely.box(*window_bounds(window, pred.transform)))
        out_shape = (int(window.height), int(window.width))
        if not len(hits):
            return np.full(out_shape, background, dtype=np.int32)
        return rasterize([shapes[i] for i in hits], out_shape=out_shape,
                         transform=pred.window_transform(window), fill=background,
                         dtype="int32")

    return read


def _features(layer: fiona.Collection, path: str,
              attribute: Optional[str]) -> Iterator[tuple[object, int]]:
    """(geometry, class id) of each feature; those without a geometry or a value are skipped."""
    for feature in layer:
        value = 1 if attribute is None else feature.properties[attribute]
        if feature.geometry is None or value is None:
            continue
        try:
            class_id = int(value)
            whole = class_id == float(value)
        except (TypeError, ValueError):
            whole = False
        if not whole:
            raise InputError(f"{path}: attribute {attribute!r} holds {value!r}; "
                             "expected integer class ids")
        yield feature.geometry, class_id
