"""Ground truth for ``glnet evaluate``, read on the prediction's grid one window at a time.

Three kinds of truth are understood:

* a raster of class ids (one band; its nodata or mask becomes the ignore value),
* an RGB colour-coded raster (three bands or more), decoded with a class table,
* a vector file (anything fiona reads), rasterised window by window.

A truth on another grid is resampled (rasters, nearest neighbour) or
reprojected (vectors) onto the prediction's grid, so that the two can be read
window for window. Whatever the kind, a reader returns class ids with
:data:`~glnet_cli.classes.IGNORE_INDEX` where there is no label. Rasters are
read here; vectors in :mod:`glnet_cli.evaluation.vector_truth`.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from typing import Iterator, Optional, Sequence

import numpy as np
from rasterio.enums import ColorInterp, Resampling
from rasterio.io import DatasetReader
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from glnet_cli.classes import IGNORE_INDEX, ClassTable
from glnet_cli.errors import GlnetWarning, InputError, RasterError
from glnet_cli.evaluation.truth_grid import TruthReader, check_overlap, warn_no_crs
from glnet_cli.evaluation.vector_truth import vector_reader
from glnet_cli.io.raster.read import open_raster


@contextlib.contextmanager
def open_truth(path: str | os.PathLike, pred: DatasetReader, *,
               table: Optional[ClassTable] = None, attribute: Optional[str] = None,
               background: int = 0, layers: Sequence[str] = ()) -> Iterator[TruthReader]:
    """Yield a reader of the truth at ``path`` on ``pred``'s grid.

    Args:
        path: A raster (class ids or RGB colours) or a vector file.
        pred: The open prediction, whose grid the truth is read on.
        table: Decodes RGB colour-coded truth; required for it.
        attribute: Vector truth: the integer field holding the class id.
            Without it every feature is class 1.
        background: Vector truth: the class of pixels no feature covers.
        layers: Vector truth: the layers to read (default: all of them).

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
        yield vector_reader(path, pred, attribute, background, layers)
        return
    with src, contextlib.ExitStack() as stack:
        if layers:
            raise InputError(f"{path}: is a raster; --layer picks layers of a vector truth")
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
        if colour_coded and table is not None:  # (a colour-coded truth without one raised)
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
            warn_no_crs(path)
        return src
    if not src.crs or not pred.crs:
        raise InputError(f"{path}: its grid differs from the prediction {pred.name} and a CRS "
                         "is missing, so it cannot be resampled onto the prediction's grid")
    check_overlap(path, src.crs, src.bounds, pred)
    warnings.warn(f"{path}: its grid (CRS, transform or size) differs from the prediction "
                  f"{pred.name}; resampling it onto the prediction's grid (nearest neighbour)",
                  GlnetWarning, stacklevel=2)
    # An alpha band marks the pixels the truth does not cover as unlabelled.
    return stack.enter_context(WarpedVRT(
        src, crs=pred.crs, transform=pred.transform, width=pred.width, height=pred.height,
        resampling=Resampling.nearest, add_alpha=ColorInterp.alpha not in src.colorinterp))
