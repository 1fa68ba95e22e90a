"""Class mask -> polygons, window by window, merged across window edges.

Windows are read one at a time and polygonised per class (the merging of the
pieces a window edge cuts apart is :mod:`glnet_cli.vector.merge`'s job);
finished polygons go to map units, are filtered by area, simplified and
written as they come. Memory holds the edge pieces of about one row of
windows, not the raster.
"""

from __future__ import annotations

import itertools
import logging
import os
import warnings
from dataclasses import dataclass, field
from typing import Optional, Sequence, TextIO, Union, cast

import numpy as np
import rasterio
import shapely
from rasterio.crs import CRS
from rasterio.windows import Window

from glnet_cli.classes import table_from_tags
from glnet_cli.errors import GlnetWarning, InputError, RasterError
from glnet_cli.io.paths import check_distinct
from glnet_cli.io.raster.read import SINGLE_PASS_CACHE_MB, bounded_block_cache, open_raster
from glnet_cli.io.raster.windows import iter_windows
from glnet_cli.io.vector.crs import output_crs
from glnet_cli.io.vector.formats import (
    check_field_text,
    check_layout,
    check_vector_output,
    default_output,
    resolve_driver,
)
from glnet_cli.io.vector.geojson_stream import GeoJSONTextWriter
from glnet_cli.io.vector.output import VectorWriter
from glnet_cli.progress_callback import ProgressCallback
from glnet_cli.vector.merge import EdgeMerger

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
    stream: Optional[TextIO] = None
    if hasattr(output_path, "write"):
        stream = cast(TextIO, output_path)
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
        writer: VectorWriter | GeoJSONTextWriter
        if stream is None:
            writer = VectorWriter(output_path, driver, _wkt(src.crs), _wkt(out_crs), layout,
                                  geometry_type, overwrite)
        else:
            writer = GeoJSONTextWriter(stream, _wkt(src.crs), _wkt(out_crs), sequence, rs,
                                       output_path)
        with writer:
            emit = _Emitter(writer, summary, names, src.transform, min_area, simplify,
                            connectivity)
            merger = EdgeMerger(connectivity, src.width, src.height)
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
