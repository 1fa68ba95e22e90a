"""Class mask -> polygons, window by window, merged across window edges.

Each window is polygonised by GDAL (``rasterio.features.shapes``) with the
window's transform *in pixel space* (a translation by its offset), so vertices
are whole pixel numbers of the full grid: two pieces of one shape cut by a
window edge share that edge exactly, and their union is exact. Only at the end
does a polygon go through the dataset's affine transform into map units.

Pieces clear of every internal window edge are final at once and written
straight away. The rest wait, per class, until the row of windows they lie in
is done; they are then unioned with what waited from the row above, and every
polygon that no longer reaches the next row is written. Memory holds the edge
pieces of about one row of windows, not the raster.
"""

from __future__ import annotations

import itertools
import logging
import os
import warnings
from dataclasses import dataclass, field
from typing import Iterator, Optional, Sequence, TextIO, Union

import numpy as np
import rasterio
import shapely
from rasterio.crs import CRS
from rasterio.features import shapes
from rasterio.windows import Window
from shapely.geometry import shape

from glnet_cli.classes import table_from_tags
from glnet_cli.errors import GlnetWarning, InputError, RasterError
from glnet_cli.io.paths import check_distinct
from glnet_cli.io.raster import SINGLE_PASS_CACHE_MB, bounded_block_cache, open_raster
from glnet_cli.io.vector_formats import (check_field_text, check_layout, check_vector_output,
                                         default_output, resolve_driver)
from glnet_cli.io.vector_output import GeoJSONTextWriter, VectorWriter, output_crs
from glnet_cli.io.windows import Box, iter_windows
from glnet_cli.progress_callback import ProgressCallback

log = logging.getLogger(__name__)

#: Data types of class masks: what glnet segment writes, and 8-bit masks from elsewhere.
MASK_DTYPES = ("uint8", "int8")
#: Data types GDAL's polygonizer takes as they are; other integers are cast to int32.
_SHAPES_DTYPES = {"uint8", "int8", "uint16", "int16", "int32"}
_INT32 = np.iinfo(np.int32)


@dataclass
class ClassSummary:
    """Polygons written for one class and their total area (in the mask's CRS units)."""

    class_id: int
    name: str
    polygons: int = 0
    area: float = 0.0


@dataclass
class VectorizeSummary:
    """What :func:`vectorize` wrote."""

    output: str
    driver: str
    layers: list[str]
    crs: Optional[str]
    area_unit: str
    windows: int
    classes: dict[int, ClassSummary] = field(default_factory=dict)
    #: Polygons left out because the output's CRS cannot hold them (pixels in space).
    unprojectable: int = 0

    @property
    def polygons(self) -> int:
        return sum(c.polygons for c in self.classes.values())

    @property
    def area(self) -> float:
        return sum(c.area for c in self.classes.values())


def vectorize(mask_path: str | os.PathLike,
              output_path: Union[str, os.PathLike, TextIO, None] = None, *,
              driver: Optional[str] = None, layout: str = "one-layer",
              classes: Optional[Sequence[int]] = None, min_area: float = 0.0,
              simplify: float = 0.0, background: Optional[int] = None, connectivity: int = 4,
              to_crs: Optional[str] = None, window_size: int = 2048, overwrite: bool = False,
              any_raster: bool = False, sequence: bool = False, rs: bool = False,
              progress: Optional[ProgressCallback] = None) -> VectorizeSummary:
    """Write the polygons of a class mask to a Shapefile, GeoPackage or GeoJSON.

    Args:
        mask_path: a single-band 8-bit integer raster of class ids.
        output_path: the vector file; its extension picks the format unless ``driver``.
            None: ``<mask>.shp`` beside the mask. A text stream (stdout): GeoJSON
            (RFC 7946) written to it as the polygons come.
        driver: ``shapefile``, ``gpkg`` or ``geojson`` (any case) to override the extension.
        layout: ``one-layer`` or ``layer-per-class`` (GeoPackage only).
        classes: only these class ids (default: all).
        min_area: drop polygons smaller than this, in CRS units squared.
        simplify: topology-preserving simplification tolerance in CRS units (0: pixel-exact).
        background: class id left out; default: the mask's ``GLNET_BACKGROUND`` tag, else none.
        connectivity: 4 (edges) or 8 (edges and corners; features become MultiPolygons).
        to_crs: reproject the output (GeoJSON is always written in EPSG:4326).
        window_size: pixels a side read and polygonised at a time.
        overwrite: replace an existing output (all Shapefile sidecars).
        any_raster: polygonise any single-band integer raster, not only 8-bit masks.
        sequence: to a stream, a GeoJSON text sequence (one feature a line), not a collection.
        rs: with ``sequence``, start each line with the RS character (RFC 8142).
        progress: ``progress(done, total, **info)``, called after each window.

    Returns:
        Per-class polygon counts and areas (before reprojection), and where they went.
    """
    mask_path = os.fspath(mask_path)
    stream = output_path if hasattr(output_path, "write") else None
    if stream is not None:
        output_path = getattr(stream, "name", "<stream>")
        if driver is not None and resolve_driver(output_path, driver) != "GeoJSON":
            raise InputError(f"{output_path}: a stream takes GeoJSON only; write {driver} "
                             "to a file (-o FILE)")
        driver = "geojson"
    else:
        output_path = default_output(mask_path) if output_path is None else os.fspath(output_path)
        check_distinct([output_path], [mask_path])
    if connectivity not in (4, 8):
        raise InputError(f"connectivity {connectivity}: use 4 or 8")
    if window_size < 1:
        raise InputError(f"window size {window_size}: give a positive number of pixels")
    driver = resolve_driver(output_path, driver)
    with bounded_block_cache(SINGLE_PASS_CACHE_MB), _open_mask(mask_path, any_raster) as src:
        tags = src.tags()
        if background is None and "GLNET_BACKGROUND" in tags:
            background = _int_tag(mask_path, tags, "GLNET_BACKGROUND")
        out_crs = output_crs(mask_path, src.crs, driver, to_crs)
        table = table_from_tags(tags)
        names = {c.id: c.name for c in table} if table else {}
        if stream is None:
            check_vector_output(output_path, driver, layout, overwrite)
            check_field_text(output_path, driver, names)
        else:
            check_layout(output_path, driver, layout)
        rows = [list(row) for _, row in itertools.groupby(
            iter_windows(src.height, src.width, window_size), key=lambda box: box.row)]
        crs = out_crs or src.crs
        summary = VectorizeSummary(output_path, driver, [], crs.to_string() if crs else None,
                                   _area_unit(src.crs), sum(len(r) for r in rows))
        geometry_type = "Polygon" if connectivity == 4 else "MultiPolygon"
        if stream is None:
            writer = VectorWriter(output_path, driver, _wkt(src.crs), _wkt(out_crs), layout,
                                  geometry_type, overwrite)
        else:
            writer = GeoJSONTextWriter(stream, _wkt(src.crs), _wkt(out_crs), sequence, rs,
                                       output_path)
        with writer:
            emit = _Emitter(writer, summary, names, src.transform, min_area, simplify,
                            connectivity)
            merger = _EdgeMerger(connectivity, src.width, src.height)
            done = 0
            for row in rows:
                for box in row:
                    data = _read_window(src, box.window, mask_path)
                    valid = _selected(data, src.nodata, background, classes)
                    if valid.any():
                        for class_id, geoms in merger.add(data, valid, box):
                            emit(class_id, geoms)
                    done += 1
                    if progress is not None:
                        progress(done, summary.windows, polygons=summary.polygons)
                for class_id, geoms in merger.flush(row[0].bottom):
                    emit(class_id, geoms)
            summary.unprojectable = writer.unprojectable
            _check_reprojected(mask_path, summary)
        summary.layers = writer.layers
    log.info("%s: %d polygons in %d classes -> %s", mask_path, summary.polygons,
             len(summary.classes), output_path)
    return summary


def _check_reprojected(path: str, summary: VectorizeSummary) -> None:
    """Say how many polygons the output's CRS could not hold; fail if that was all of them."""
    if not summary.unprojectable:
        return
    what = (f"{summary.unprojectable} polygon(s) lie where {summary.crs} has no coordinates "
            "(outside the area the mask's projection covers, such as pixels in space)")
    if not summary.polygons:
        raise InputError(f"{path}: none of its polygons could be reprojected: {what}; "
                         "write a .gpkg or .shp in the mask's own CRS instead")
    warnings.warn(f"{path}: {what}; they were left out of {summary.output}", GlnetWarning,
                  stacklevel=3)


def _open_mask(path: str, any_raster: bool = False) -> rasterio.DatasetReader:
    """Open ``path`` and check it is a class mask: one band of 8-bit integers.

    A 16-bit image has tens of thousands of values: polygonising it runs long and
    writes a polygon per pixel, so it is refused unless ``any_raster``.
    """
    src = open_raster(path)
    dtype = src.dtypes[0]
    problem = None
    if src.count != 1:
        problem = f"has {src.count} bands; a class mask has one (pick it with gdal_translate -b N)"
    elif np.dtype(dtype).kind not in "iu":
        problem = f"holds {dtype} data; a class mask holds integer class ids"
    elif dtype not in MASK_DTYPES and not any_raster:
        problem = (f"holds {dtype} data, not an 8-bit class mask such as glnet segment writes; "
                   "to polygonise every distinct value anyway, give --any-raster")
    if problem:
        src.close()
        raise RasterError(f"{path}: {problem}")
    return src


def _int_tag(path: str, tags: dict, key: str) -> int:
    try:
        return int(tags[key])
    except ValueError:
        raise RasterError(f"{path}: tag {key}={tags[key]!r} is not a class id") from None


def _wkt(crs: Optional[CRS]) -> Optional[str]:
    return crs.to_wkt() if crs else None


def _area_unit(crs: Optional[CRS]) -> str:
    if crs is None:
        return "units²"
    if crs.is_geographic:
        return "deg²"
    unit = crs.linear_units
    return "m²" if unit in ("metre", "meter") else f"{unit}²"


def _read_window(src: rasterio.DatasetReader, window: Window, path: str) -> np.ndarray:
    data = src.read(1, window=window)
    if data.dtype.name in _SHAPES_DTYPES:
        return data
    if data.size and (data.min() < _INT32.min or data.max() > _INT32.max):
        raise RasterError(f"{path}: holds values beyond 32-bit integers; class ids must fit")
    return data.astype(np.int32)


def _selected(data: np.ndarray, nodata: Optional[float], background: Optional[int],
              classes: Optional[Sequence[int]]) -> np.ndarray:
    """Pixels to polygonise: not nodata, not background, and in ``classes`` when given."""
    valid = np.ones(data.shape, dtype=bool) if classes is None else np.isin(data, classes)
    for excluded in (nodata, background):
        if excluded is not None:
            valid &= data != excluded
    return valid


class _EdgeMerger:
    """Polygonises windows and merges the pieces that window edges cut apart."""

    def __init__(self, connectivity: int, width: int, height: int) -> None:
        self.connectivity = connectivity
        self.width, self.height = width, height
        self.pending: dict[int, list[np.ndarray]] = {}

    def add(self, data: np.ndarray, valid: np.ndarray,
            box: Box) -> Iterator[tuple[int, np.ndarray]]:
        """Polygonise one window; yield the final pieces by class, keep the edge pieces."""
        x0, y0, x1, y1 = box.col, box.row, box.right, box.bottom
        pixel_space = rasterio.Affine.translation(x0, y0)
        found = [(shape(g), int(v)) for g, v in shapes(
            data, mask=valid, connectivity=self.connectivity, transform=pixel_space)]
        geoms = self._valid(np.array([g for g, _ in found], dtype=object))
        values = np.array([v for _, v in found])
        minx, miny, maxx, maxy = shapely.bounds(geoms).T
        # Bounds are whole pixel numbers, so == is exact; the raster's own border is no seam.
        on_edge = (((minx == x0) & (x0 > 0)) | ((maxx == x1) & (x1 < self.width))
                   | ((miny == y0) & (y0 > 0)) | ((maxy == y1) & (y1 < self.height)))
        for class_id in np.unique(values):
            of_class = values == class_id
            if (of_class & on_edge).any():
                self.pending.setdefault(int(class_id), []).append(geoms[of_class & on_edge])
            if (of_class & ~on_edge).any():
                yield int(class_id), geoms[of_class & ~on_edge]

    def flush(self, row_bottom: int) -> Iterator[tuple[int, np.ndarray]]:
        """Union each class's edge pieces; yield the polygons that cannot grow any more."""
        for class_id in list(self.pending):
            merged = shapely.get_parts(shapely.union_all(np.concatenate(self.pending[class_id])))
            if self.connectivity == 8:
                merged = _corner_groups(merged)
            open_below = (shapely.bounds(merged)[:, 3] >= row_bottom) & (row_bottom < self.height)
            if open_below.any():
                self.pending[class_id] = [merged[open_below]]
            else:
                del self.pending[class_id]
            if (~open_below).any():
                yield class_id, merged[~open_below]

    def _valid(self, geoms: np.ndarray) -> np.ndarray:
        """GDAL's 8-connected polygons touch themselves at corners; make them valid OGC."""
        if self.connectivity == 8:
            bad = ~shapely.is_valid(geoms)
            geoms[bad] = shapely.make_valid(geoms[bad], method="structure",
                                            keep_collapsed=False)
        return geoms


def _corner_groups(parts: np.ndarray) -> np.ndarray:
    """Join polygons that touch (at a corner, under 8-connectivity) into MultiPolygons."""
    left, right = shapely.STRtree(parts).query(parts, predicate="intersects")
    label = np.arange(len(parts))
    while True:  # propagate the smallest index through each touching group
        new = label.copy()
        np.minimum.at(new, left, label[right])
        new = new[new]
        if np.array_equal(new, label):
            break
        label = new
    order = np.argsort(label, kind="stable")
    _, group = np.unique(label[order], return_inverse=True)
    return shapely.multipolygons(parts[order], indices=group)


class _Emitter:
    """Takes finished pixel-space polygons to map units, filters, simplifies and writes them."""

    def __init__(self, writer: VectorWriter | GeoJSONTextWriter, summary: VectorizeSummary,
                 names: dict[int, str], transform: rasterio.Affine, min_area: float,
                 simplify: float, connectivity: int) -> None:
        self.writer, self.summary, self.names = writer, summary, names
        self.affine = np.array(transform[:6], dtype=np.float64).reshape(2, 3)
        self.min_area, self.simplify = min_area, simplify
        self.multi = connectivity == 8

    def _to_map(self, xy: np.ndarray) -> np.ndarray:
        return xy @ self.affine[:, :2].T + self.affine[:, 2]

    def __call__(self, class_id: int, geoms: np.ndarray) -> None:
        geoms = shapely.transform(geoms, self._to_map)
        if self.min_area > 0:
            geoms = geoms[shapely.area(geoms) >= self.min_area]
            if not len(geoms):
                return
        if self.simplify > 0:
            geoms = shapely.simplify(geoms, self.simplify, preserve_topology=True)
        if self.multi:
            parts, index = shapely.get_parts(geoms, return_index=True)
            geoms = shapely.multipolygons(parts, indices=index)
        areas, perimeters = shapely.area(geoms), shapely.length(geoms)
        name = self.names.get(class_id, f"class_{class_id}")
        written = self.writer.write(geoms, class_id, name, areas, perimeters)
        if not written.any():
            return
        stats = self.summary.classes.setdefault(class_id, ClassSummary(class_id, name))
        stats.polygons += int(np.count_nonzero(written))
        stats.area += float(areas[written].sum())
