"""Polygon output to files through fiona: Shapefile, GeoPackage or GeoJSON.

The vectoriser hands finished polygons here as they come, so none wait in
memory. A file output is written under glnet's temp names beside the target
(:class:`~glnet_cli.io.paths.PartialFiles`: a Shapefile's sidecars included),
re-opened and checked, and published only when complete; anything GDAL
reports as lost (a value too wide for its field, a full disk) fails the run,
and a failed run leaves no half-written Shapefile, GeoPackage or GeoJSON.
GeoJSON to a stream is :mod:`glnet_cli.io.vector.geojson_stream`'s job; the output's
CRS and the polygons it cannot hold are :mod:`glnet_cli.io.vector.crs`'s.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from typing import Any, Iterator, Optional, Sequence

import fiona
import fiona.meta
import numpy as np
from fiona._err import CPLE_BaseError  # what GDAL's own failures raise; not re-exported
from fiona.errors import FionaError
from shapely.geometry import mapping

from glnet_cli.errors import GlnetError, OutputWriteError
from glnet_cli.io.gdal_messages import GdalMessages, capture_gdal_messages
from glnet_cli.io.paths import PartialFiles, fsync_file, publish, write_failure
from glnet_cli.io.vector.crs import PolygonSink
from glnet_cli.io.vector.formats import SHAPEFILE_SIDECARS, SHAPEFILE_TEXT_BYTES, output_files

log = logging.getLogger(__name__)

_FIELDS = {"class_id": "int", "class_name": "str", "area": "float", "perimeter": "float"}
#: Shapefile (dBASE) fields wide enough for every value: int32 ids, names as long as
#: check_field_text allows, areas up to 1e16 (the Earth is 5.1e14 m²) with 16 decimals.
_SHAPEFILE_FIELDS = {"class_id": "int:11", "class_name": f"str:{SHAPEFILE_TEXT_BYTES}",
                     "area": "float:33.16", "perimeter": "float:33.16"}
#: GDAL warnings that mean a value was cut short on its way into the file.
_CUT = re.compile(r"has been truncated|not successfully written", re.IGNORECASE)
#: Files SQLite may keep beside a GeoPackage while it is written.
_SQLITE_SIDECARS = ("-journal", "-wal", "-shm")
#: What fiona raises when GDAL fails to write.
_WRITE_ERRORS = (FionaError, CPLE_BaseError, RuntimeError, OSError)


class VectorWriter(PolygonSink):
    """Streams polygons into one layer, or one layer per class, of a new file.

    Args:
        path: the final output file.
        driver: an OGR driver from :func:`~glnet_cli.io.vector.formats.resolve_driver`.
        crs: WKT of the geometries' CRS, or None when the mask has none.
        to_crs: WKT/EPSG of the output CRS when it differs from ``crs``.
        layout: ``one-layer``, or ``layer-per-class`` (GeoPackage only).
        geometry_type: ``Polygon`` or ``MultiPolygon``.
        overwrite: replace an existing output (all Shapefile sidecars).
    """

    def __init__(self, path: str, driver: str, crs: Optional[str], to_crs: Optional[str],
                 layout: str = "one-layer", geometry_type: str = "Polygon",
                 overwrite: bool = False) -> None:
        super().__init__(crs, to_crs)
        self.path = os.fspath(path)
        self.driver = driver
        self.layout = layout
        self.overwrite = overwrite
        fields = _SHAPEFILE_FIELDS if driver == "ESRI Shapefile" else _FIELDS
        self.schema = {"geometry": geometry_type, "properties": dict(fields)}
        #: Layer name for one layer (or an empty result): the file's stem.
        self._stem_layer = _layer_name(os.path.splitext(self.path)[0])
        self._class_names: dict[int, str] = {}
        self._counts: dict[int, int] = {}
        self._stack = contextlib.ExitStack()
        self._partial: PartialFiles  # the run's temp names, from __enter__ on
        self._tmp = ""
        self._staging = ""
        self._sink: Any = None

    def __enter__(self) -> "VectorWriter":
        self._partial = PartialFiles(self.path)
        try:
            # fiona's error handler for the whole write, so that no GDAL message bypasses
            # the capture (fiona installs it only while opening otherwise)
            self._stack.enter_context(fiona.Env())
            self._tmp = self._temp_names(os.path.splitext(self.path)[1])
            if self.layout == "layer-per-class":
                # One layer per class without holding features: stage them in one layer,
                # split by class at the end (OGR refuses two writers on one GeoPackage).
                self._staging = self._temp_names(".staging.gpkg")
                self._sink = self._open(self._staging, "GPKG", "staging")
            else:
                # A Shapefile's layer is its file name; the others name it inside.
                layer = None if self.driver == "ESRI Shapefile" else self._stem_layer
                self._sink = self._open(self._tmp, self.driver, layer)
                self.layers.append(self._stem_layer)
        except BaseException:
            self._abandon()
            raise
        return self

    def _temp_names(self, suffix: str) -> str:
        """A temp file name, with the sidecars GDAL may add to it registered for cleanup."""
        name = self._partial.name(suffix)
        if suffix.lower() == ".shp":
            for ext in SHAPEFILE_SIDECARS[1:]:
                self._partial.name(ext)
        else:
            for ext in _SQLITE_SIDECARS:
                self._partial.name(suffix + ext)
        return name

    def _open(self, path: str, driver: str, layer: Optional[str]) -> Any:
        options = {}
        if driver == "GeoJSON" and "RFC7946" in fiona.meta.layer_creation_options(driver):
            options["RFC7946"] = "YES"
        crs = self.to_crs or self.src_crs
        with self._failures():
            return fiona.open(path, "w", driver=driver, schema=self.schema, layer=layer,
                              **({"crs": crs} if crs else {}), **options)

    def write(self, geoms: Sequence[Any] | np.ndarray, class_id: int, class_name: str,
              areas: np.ndarray, perimeters: np.ndarray) -> np.ndarray:
        """Write polygons of one class, with their area and perimeter in the mask's CRS.

        Returns:
            A boolean mask of the polygons written (the others could not be reprojected).
        """
        moved, kept = self._reproject(np.asarray(geoms, dtype=object))
        self._class_names[class_id] = class_name
        self._counts[class_id] = self._counts.get(class_id, 0) + len(moved)
        records = ({"geometry": mapping(g),
                    "properties": {"class_id": class_id, "class_name": class_name,
                                   "area": float(a), "perimeter": float(p)}}
                   for g, a, p in zip(moved, areas[kept], perimeters[kept]))
        with self._failures():
            self._sink.writerecords(records)
        return kept

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is not None:
            self._abandon()
            return
        try:
            with self._failures():
                self._sink.close()
                if self.layout == "layer-per-class":
                    self._split_by_class()
            self._verify()
            self._publish()
        except BaseException:
            self._abandon()
            raise
        self._stack.close()
        self._partial.discard()  # the staging GeoPackage; the published files are gone from it
        log.info("wrote %s (%s, layers: %s)", self.path, self.driver, ", ".join(self.layers))

    def _abandon(self) -> None:
        """Close what is open and remove every temp file; errors on the way are moot."""
        with contextlib.suppress(Exception):
            if self._sink is not None and not self._sink.closed:
                self._sink.close()
        self._stack.close()
        self._partial.discard()

    @contextlib.contextmanager
    def _failures(self) -> Iterator[None]:
        """Fail on whatever GDAL says was lost while fiona works on the file: one line naming
        the output (not the feature that met the error), a value cut short included.

        Only fiona's calls are watched: reprojection failures are expected and counted.
        """
        with capture_gdal_messages() as messages:
            try:
                yield
            except _WRITE_ERRORS as exc:
                if isinstance(exc, GlnetError):
                    raise
                self._raise_for_losses(messages)
                if isinstance(exc, OSError) and exc.errno:
                    raise write_failure(self.path, exc) from exc
                lines = str(exc).split("Failed to write record")[0].strip().splitlines()
                reason = lines[0].rstrip(". ") if lines else type(exc).__name__
                raise OutputWriteError(f"{self.path}: writing failed: {reason}; "
                                       "nothing was written") from exc
        self._raise_for_losses(messages)

    def _raise_for_losses(self, messages: GdalMessages) -> None:
        cut = [m for m in messages.messages if _CUT.search(m.text)]
        if cut:
            raise OutputWriteError(f"{self.path}: writing failed: {cut[0].text}; "
                                   "nothing was written")
        messages.raise_for_losses(self.path)

    def _split_by_class(self) -> None:
        """Copy the staged features into one GeoPackage layer per class (an empty one if none)."""
        if not self._class_names:
            self._open(self._tmp, "GPKG", self._stem_layer).close()
            self.layers.append(self._stem_layer)
            return
        with fiona.open(self._staging) as staged:
            for class_id, class_name in sorted(self._class_names.items()):
                layer = _layer_name(class_name)
                if layer in self.layers:
                    layer = f"{layer}_{class_id}"
                with self._open(self._tmp, "GPKG", layer) as out:
                    out.writerecords(staged.filter(where=f"class_id = {class_id}"))
                self.layers.append(layer)

    def _verify(self) -> None:
        """Re-open the finished file: every layer holds what was written, to the last feature."""
        expected: dict[Optional[str], int]  # by layer name; None: the file's only layer
        if self.layout == "layer-per-class" and self._class_names:
            expected = {layer: self._counts[class_id] for layer, class_id
                        in zip(self.layers, sorted(self._class_names))}
        else:  # one layer, however the driver names it
            expected = {None: sum(self._counts.values())}
        with self._failures():
            for layer, count in expected.items():
                with fiona.open(self._tmp, layer=layer) as check:
                    found = len(check)
                    last = list(check.values(found - 1, found)) if found else []
                if found != count or (found and last[0].geometry is None):
                    raise OutputWriteError(f"{self.path}: writing failed: {found} of {count} "
                                           "polygons read back; nothing was written")

    def _publish(self) -> None:
        """Give every finished file its real name, the .shp last; drop stale sidecars."""
        pairs = [(tmp, target) for tmp, target in
                 zip(output_files(self._tmp, self.driver), output_files(self.path, self.driver))
                 if os.path.exists(tmp)]
        pairs = pairs[1:] + pairs[:1]
        published: list[str] = []
        try:
            for tmp, target in pairs:
                fsync_file(tmp)
                publish(tmp, target, self.overwrite)
                published.append(target)
        except BaseException:
            if not self.overwrite:  # what this run published is its own: take it back
                for target in published:
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(target)
            raise
        written = {target for _, target in pairs}
        for stale in output_files(self.path, self.driver):
            if stale not in written:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(stale)


def _layer_name(name: str) -> str:
    """A layer name safe in every GIS: letters, digits and underscores."""
    return re.sub(r"\W+", "_", os.path.basename(name)).strip("_") or "polygons"
