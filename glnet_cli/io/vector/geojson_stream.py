"""GeoJSON text to a stream (stdout), written as the polygons come.

RFC 7946 throughout: WGS84 longitude/latitude, about 1 cm of decimals,
counterclockwise exterior rings; a FeatureCollection, or a GeoJSON text
sequence of one feature a line (RFC 8142).
"""

from __future__ import annotations

import json
from typing import Any, Optional, Sequence, TextIO

import numpy as np
import shapely
from shapely.geometry.polygon import orient

from glnet_cli.errors import OutputWriteError
from glnet_cli.io.vector.crs import PolygonSink

#: Decimals of a GeoJSON coordinate (about 1 cm), as GDAL's RFC 7946 writer keeps.
GEOJSON_DECIMALS = 7
#: Record separator that starts each feature of a GeoJSON text sequence (RFC 8142).
RS = "\x1e"


class GeoJSONTextWriter(PolygonSink):
    """Writes RFC 7946 GeoJSON to a text stream: a FeatureCollection, or one feature a line.

    Args:
        stream: where the text goes (stdout).
        crs: WKT of the geometries' CRS.
        to_crs: ``EPSG:4326`` unless ``crs`` is that already (then None).
        sequence: a GeoJSON text sequence, one feature per line, instead of a collection.
        rs: start each line of a sequence with the RS character (RFC 8142).
        name: what the stream is called in messages.
    """

    def __init__(self, stream: TextIO, crs: Optional[str], to_crs: Optional[str],
                 sequence: bool = False, rs: bool = False, name: str = "<stdout>") -> None:
        super().__init__(crs, to_crs)
        self.stream, self.sequence, self.name = stream, sequence, name
        self.prefix = RS if rs and sequence else ""
        self.layers = [name]
        self._first = True

    def __enter__(self) -> "GeoJSONTextWriter":
        if not self.sequence:
            self._put('{"type": "FeatureCollection", "features": [\n')
        return self

    def write(self, geoms: Sequence[Any] | np.ndarray, class_id: int, class_name: str,
              areas: np.ndarray, perimeters: np.ndarray) -> np.ndarray:
        """Write polygons of one class as features; return a mask of those written."""
        moved, kept = self._reproject(np.asarray(geoms, dtype=object))
        moved = shapely.transform(moved, lambda xy: np.round(xy, GEOJSON_DECIMALS))
        lines = []
        for geom, a, p in zip(moved, areas[kept], perimeters[kept]):
            text = shapely.to_geojson(_counterclockwise(geom))
            properties = json.dumps({"class_id": class_id, "class_name": class_name,
                                     "area": float(a), "perimeter": float(p)})
            feature = f'{{"type": "Feature", "properties": {properties}, "geometry": {text}}}'
            if self.sequence:
                lines.append(f"{self.prefix}{feature}\n")
            else:
                lines.append(feature if self._first else f",\n{feature}")
                self._first = False
        self._put("".join(lines))
        return kept

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            if not self.sequence:
                self._put("\n]}\n")
            self._put("", flush=True)

    def _put(self, text: str, flush: bool = False) -> None:
        try:
            self.stream.write(text)
            if flush:
                self.stream.flush()
        except OSError as exc:  # a full disk, or the reader went away (Broken pipe)
            raise OutputWriteError(f"{self.name}: writing failed: {exc.strerror or exc}; the "
                                   "GeoJSON written so far is incomplete") from exc


def _counterclockwise(geom: Any) -> Any:
    """RFC 7946's winding: exterior rings counterclockwise, holes clockwise."""
    if geom.geom_type == "MultiPolygon":
        return shapely.MultiPolygon([orient(part) for part in geom.geoms])
    return orient(geom)
