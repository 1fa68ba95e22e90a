"""STAC outputs: an Item describing each mask, and a Catalog linking a batch's items.

A catalogue can ingest what glnet writes only if the mask says what it is:
where (geometry and bbox in WGS 84, the projection and grid), what its
values mean (the classification extension's classes, 255 as nodata), and
what made it (software versions, the model file's name and SHA-256), with a
``derived_from`` link to the scene's own item. Hrefs are relative, so a
folder of masks can be moved or uploaded whole. pystac is imported here
only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
import json
import os
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import rasterio
from rasterio.warp import transform as warp_points

from glnet_cli.classes import IGNORE_INDEX, ClassTable
from glnet_cli.io.paths import write_text
from glnet_cli.io.stac.read import require_pystac

#: The processing extension: where ``processing:software`` is defined.
PROCESSING_SCHEMA = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"
#: Points per edge of the footprint, so that a reprojected edge follows its curve.
_EDGE_POINTS = 8


@dataclass(frozen=True)
class MaskProvenance:
    """What made a mask: the model file (name, digest) and the input item, if any."""

    model_name: str
    model_sha256: str
    #: The input's STAC item href (``derived_from``); None for a plain raster.
    source_href: Optional[str] = None
    #: When the scene was acquired (the input item's datetime); None: now.
    datetime: Optional[dt.datetime] = None


def sha256_file(path: str, chunk: int = 2 ** 20) -> str:
    """The hex SHA-256 of a file, read in chunks (model files reach hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def item_path(mask: str) -> str:
    """``masks/a_mask.tif`` -> ``masks/a_mask.json``: the item lies beside its mask."""
    return os.path.splitext(mask)[0] + ".json"


def write_mask_item(mask: str, classes: ClassTable, provenance: MaskProvenance, *,
                    thumbnail: Optional[str] = None, probabilities: Optional[str] = None,
                    cog: bool = False, overwrite: bool = False) -> str:
    """Write the STAC Item of ``mask`` beside it; return its path.

    The mask is read for its grid only (no pixels).
    """
    pystac = require_pystac()
    from pystac.extensions.classification import Classification, ClassificationExtension
    from pystac.extensions.projection import ProjectionExtension
    from pystac.extensions.raster import DataType, RasterBand, RasterExtension

    with rasterio.open(mask) as src:
        crs, transform, width, height = src.crs, src.transform, src.width, src.height
    geometry, bbox = _footprint(crs, transform, width, height)
    now = dt.datetime.now(dt.timezone.utc)
    item = pystac.Item(os.path.splitext(os.path.basename(mask))[0], geometry, bbox,
                       provenance.datetime or now, {
                           "created": pystac.utils.datetime_to_str(now),
                           "processing:software": software(),
                           "glnet:model": {"file": provenance.model_name,
                                           "sha256": provenance.model_sha256}})
    item.stac_extensions.append(PROCESSING_SCHEMA)
    here = os.path.dirname(os.path.abspath(mask))
    asset = pystac.Asset(_relative(mask, here), "class mask",
                         media_type=pystac.MediaType.COG if cog else pystac.MediaType.GEOTIFF,
                         roles=["data"])
    item.add_asset("mask", asset)
    projection = ProjectionExtension.ext(item, add_if_missing=True)
    epsg = crs.to_epsg() if crs else None
    projection.apply(epsg=epsg, wkt2=None if epsg or crs is None else crs.to_wkt(),
                     shape=[height, width], transform=list(transform)[:6])
    RasterExtension.ext(asset, add_if_missing=True).bands = [RasterBand.create(
        nodata=IGNORE_INDEX, data_type=DataType.UINT8,
        spatial_resolution=abs(transform.a) if transform.b == 0 else None)]
    ClassificationExtension.ext(asset, add_if_missing=True).classes = [
        Classification.create(value=c.id, name=_class_name(c.name), description=c.name,
                              color_hint="%02X%02X%02X" % c.color) for c in classes
    ] + [Classification.create(value=IGNORE_INDEX, name="nodata", nodata=True,
                               description="no valid input pixels")]
    if probabilities:
        item.add_asset("probabilities", pystac.Asset(
            _relative(probabilities, here), "class probabilities x 255",
            media_type=pystac.MediaType.COG if cog else pystac.MediaType.GEOTIFF,
            roles=["data"]))
    if thumbnail:
        item.add_asset("thumbnail", pystac.Asset(_relative(thumbnail, here), "quick look",
                                                 media_type=pystac.MediaType.PNG,
                                                 roles=["thumbnail"]))
    if provenance.source_href:
        item.add_link(pystac.Link("derived_from", provenance.source_href,
                                  media_type=pystac.MediaType.GEOJSON, title="input scene"))
    path = item_path(mask)
    write_text(path, _dump(item.to_dict(include_self_link=False, transform_hrefs=False)),
               overwrite=overwrite)
    return path


def write_catalog(path: str, items: Sequence[str], *, overwrite: bool,
                  description: str = "Class masks written by glnet segment") -> None:
    """A STAC Catalog at ``path`` linking each item file (relative hrefs)."""
    pystac = require_pystac()
    here = os.path.dirname(os.path.abspath(path))
    catalog = pystac.Catalog(os.path.splitext(os.path.basename(path))[0], description,
                             title="glnet masks")
    for item in items:
        catalog.add_link(pystac.Link(pystac.RelType.ITEM, _relative(item, here),
                                     media_type=pystac.MediaType.JSON))
    write_text(path, _dump(catalog.to_dict(include_self_link=False, transform_hrefs=False)),
               overwrite=overwrite)


def software() -> dict[str, str]:
    """Versions of what shaped the mask: glnet, torch, GDAL."""
    found = {}
    for name in ("glnet", "torch"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "unknown"
    found["GDAL"] = rasterio.__gdal_version__
    return found


def _footprint(crs: Any, transform: rasterio.Affine, width: int,
               height: int) -> tuple[Optional[dict], Optional[list[float]]]:
    """The grid's outline in WGS 84 (densified edges) and its bbox; none without a CRS."""
    if crs is None:
        return None, None
    steps = [i / _EDGE_POINTS for i in range(_EDGE_POINTS)]
    ring = ([(s * width, 0) for s in steps] + [(width, s * height) for s in steps]
            + [((1 - s) * width, height) for s in steps] + [(0, (1 - s) * height) for s in steps])
    xs, ys = zip(*(transform * corner for corner in ring))
    lons, lats = warp_points(crs, "EPSG:4326", list(xs), list(ys))
    coords = [[round(x, 9), round(y, 9)] for x, y in zip(lons, lats)]
    coords.append(coords[0])
    bbox = [min(lons), min(lats), max(lons), max(lats)]
    return {"type": "Polygon", "coordinates": [coords]}, [round(v, 9) for v in bbox]


def _class_name(name: str) -> str:
    """The classification extension's names are ``[0-9A-Za-z_-]+``; the description keeps all."""
    return "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_") else "_"
                   for ch in name) or "class"


def _relative(path: str, folder: str) -> str:
    return "./" + os.path.relpath(os.path.abspath(path), folder).replace(os.sep, "/")


def _dump(data: dict) -> str:
    return json.dumps(data, indent=2) + "\n"
