"""Vector files read as ground truth: their layers, features with class ids, and CRS.

The files are opened here; :mod:`glnet_cli.evaluation.vector_truth` puts the
features on the prediction's grid. GeoJSON files older than RFC 7946 may name
their CRS in a ``crs`` member GDAL does not read: :func:`legacy_crs_member`
reads it.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Iterator, Optional

import fiona
from fiona.errors import FionaError
from rasterio._err import CPLE_BaseError  # what GDAL's transformer raises; not re-exported
from rasterio.crs import CRS
from rasterio.errors import CRSError

from glnet_cli.errors import InputError


def list_layers(path: str) -> list[str]:
    """The layers of the vector file ``path``; a file GDAL cannot read is an InputError."""
    try:
        return fiona.listlayers(path)
    except (FionaError, CPLE_BaseError, OSError):
        raise InputError(f"{path}: neither a raster nor a vector file GDAL can read") from None


@contextlib.contextmanager
def open_layer(path: str, layer: str, attribute: Optional[str]) -> Iterator[fiona.Collection]:
    """Yield ``layer`` of ``path`` open, once it is known to have the field ``attribute``."""
    with fiona.open(path, layer=layer) as src:
        fields = list(src.schema["properties"])
        if attribute is not None and attribute not in fields:
            raise InputError(f"{path}: no attribute {attribute!r} in layer {layer}; its "
                             f"fields are: {', '.join(fields) or '(none)'}")
        yield src


def class_features(layer: fiona.Collection, path: str,
                   attribute: Optional[str]) -> Iterator[tuple[object, int]]:
    """(geometry, class id) of each feature; those without a geometry or a value are skipped.

    Without ``attribute`` every feature is class 1.
    """
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


def legacy_crs_member(path: str) -> Optional[CRS]:
    """The CRS a GeoJSON 2008 ``crs`` member names, in the forms GDAL does not read."""
    try:
        with open(path, "rb") as f:
            member = json.load(f).get("crs")
        properties = member.get("properties") or {}
    except (OSError, ValueError, AttributeError):
        return None
    text = properties.get("proj4") or properties.get("name") or properties.get("urn")
    if member.get("type") == "link" and isinstance(properties.get("href"), str):
        linked = os.path.join(os.path.dirname(path), properties["href"])
        with contextlib.suppress(OSError):
            with open(linked, encoding="utf-8") as f:
                text = f.read()
    if "code" in properties:
        text = f"EPSG:{properties['code']}"
    try:
        crs = CRS.from_user_input(text) if isinstance(text, str) else None
    except CRSError:
        raise InputError(f"{path}: its \"crs\" member names {str(text)[:60]!r}, which is "
                         "not a CRS GDAL knows") from None
    return None if crs == CRS.from_epsg(4326) else crs
