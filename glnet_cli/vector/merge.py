"""Polygonising windows so that the pieces a window edge cuts apart join again exactly.

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

from typing import Iterator

import numpy as np
import rasterio
import shapely
from rasterio.features import shapes
from shapely.geometry import shape

from glnet_cli.io.raster.windows import Box


class EdgeMerger:
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
