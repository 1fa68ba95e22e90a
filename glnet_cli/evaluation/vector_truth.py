"""Vector ground truth (anything fiona reads), rasterised on the prediction's grid.

Every layer's features are read once, put on the prediction's CRS (those it
cannot hold are left out and counted), and indexed; each window then
rasterises only the features that touch it. GeoJSON files older than RFC 7946
may name their CRS in forms GDAL does not read, or none at all.
"""

from __future__ import annotations

import logging
import warnings
from typing import Optional, Sequence

import fiona
import numpy as np
import shapely
from rasterio.crs import CRS
from rasterio.features import rasterize
from rasterio.io import DatasetReader
from rasterio.windows import Window
from rasterio.windows import bounds as window_bounds

from glnet_cli.errors import GlnetWarning, InputError
from glnet_cli.evaluation.truth_grid import TruthReader, check_overlap, warn_no_crs
from glnet_cli.io.vector.reproject import reproject_geometries
from glnet_cli.io.vector.truth import class_features, legacy_crs_member, list_layers, open_layer

log = logging.getLogger(__name__)


def vector_reader(path: str, pred: DatasetReader, attribute: Optional[str],
                  background: int, layers: Sequence[str]) -> TruthReader:
    """A reader rasterising the features of ``layers`` that touch each window asked for."""
    geoms_per_layer, values_per_layer, total = [], [], 0
    for layer in _layer_names(path, layers):
        layer_geoms, layer_values, count = _layer_shapes(path, layer, pred, attribute)
        geoms_per_layer.append(layer_geoms)
        values_per_layer.append(layer_values)
        total += count
    geoms, values = np.concatenate(geoms_per_layer), np.concatenate(values_per_layer)
    _report_unprojectable(path, pred, total, total - len(geoms))
    if len(geoms):
        check_overlap(path, None, tuple(shapely.total_bounds(geoms)), pred)
    log.info("%s: %d features to rasterise", path, len(geoms))
    tree = shapely.STRtree(geoms)

    def read(window: Window) -> np.ndarray:
        hits = tree.query(shapely.box(*window_bounds(window, pred.transform)))
        out_shape = (int(window.height), int(window.width))
        if not len(hits):
            return np.full(out_shape, background, dtype=np.int32)
        return rasterize(zip(geoms[hits], values[hits].tolist()), out_shape=out_shape,
                         transform=pred.window_transform(window), fill=background,
                         dtype="int32")

    return read


def _layer_names(path: str, wanted: Sequence[str]) -> list[str]:
    """The layers to read: those asked for (each must exist), else every one the file has."""
    available = list_layers(path)
    missing = [name for name in wanted if name not in available]
    if missing:
        raise InputError(f"{path}: has no layer {missing[0]!r}; its layers are: "
                         f"{', '.join(available)}")
    if len(available) > 1 and not wanted:
        log.info("%s: reading all %d layers (%s); --layer picks some", path, len(available),
                 ", ".join(available))
    return list(wanted) or available


def _layer_shapes(path: str, layer: str, pred: DatasetReader,
                  attribute: Optional[str]) -> tuple[np.ndarray, np.ndarray, int]:
    """One layer's geometries on the prediction's CRS, their class ids, and how many it has.

    Features whose coordinates the prediction's CRS cannot hold are left out.
    """
    with open_layer(path, layer, attribute) as src:
        crs = _layer_crs(src, path, pred)
        features = list(class_features(src, path, attribute))
    geoms = np.array([shapely.geometry.shape(geom) for geom, _ in features], dtype=object)
    values = np.array([value for _, value in features], dtype=np.int64)
    if crs is not None and len(geoms):
        geoms, kept = reproject_geometries(geoms, crs, pred.crs)
        values = values[kept]
    return geoms, values, len(features)


def _layer_crs(src: fiona.Collection, path: str, pred: DatasetReader) -> Optional[CRS]:
    """The CRS to reproject a layer from; None when its features are on the prediction's."""
    crs = CRS.from_wkt(src.crs_wkt) if src.crs_wkt else None
    if not crs or not pred.crs:
        warn_no_crs(path)
        return None
    if src.driver == "GeoJSON" and crs == CRS.from_epsg(4326) and not _lon_lat(src.bounds):
        crs = _geojson_crs(path, src.bounds, pred)
    return None if crs == pred.crs else crs


def _lon_lat(bounds: tuple[float, float, float, float]) -> bool:
    left, bottom, right, top = bounds
    return -180 <= left <= right <= 180 and -90 <= bottom <= top <= 90


def _geojson_crs(path: str, bounds: tuple[float, float, float, float],
                 pred: DatasetReader) -> CRS:
    """The CRS of a GeoJSON file whose coordinates are not longitude/latitude.

    RFC 7946 GeoJSON is WGS84, which GDAL assumes when it finds no ``crs`` member
    it understands. Older files (GeoJSON 2008, solaris' samples) name their CRS
    in a ``crs`` member, or none at all and are in the image's CRS.
    """
    member = legacy_crs_member(path)
    if member is not None:
        return member
    left, bottom, right, top = bounds
    p = pred.bounds
    if left < p.right and right > p.left and bottom < p.top and top > p.bottom:
        warnings.warn(f"{path}: its coordinates are not longitude/latitude and it names no "
                      "CRS; they overlap the prediction in its CRS, so they are taken to be "
                      "in it", GlnetWarning, stacklevel=4)
        return pred.crs
    raise InputError(f"{path}: its coordinates (x {left:.6g}..{right:.6g}, y {bottom:.6g}.."
                     f"{top:.6g}) are not longitude/latitude, as GeoJSON's are, and it names "
                     "no CRS; add a \"crs\" member or convert it with ogr2ogr -s_srs EPSG:XXXX "
                     "-t_srs EPSG:4326")


def _report_unprojectable(path: str, pred: DatasetReader, total: int, left_out: int) -> None:
    if not left_out:
        return
    where = (f"their coordinates lie outside the area the prediction's CRS "
             f"({pred.crs.to_string()}) covers")
    if left_out == total:
        raise InputError(f"{path}: none of its {total} features can be put on the prediction's "
                         f"grid: {where}; check the file's CRS")
    warnings.warn(f"{path}: {left_out} of its {total} features were left out: {where}",
                  GlnetWarning, stacklevel=4)
