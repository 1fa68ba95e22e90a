"""STAC inputs: the scenes a STAC Item, ItemCollection, Catalog or Collection names.

Archives are found through catalogues now, so ``glnet segment`` takes one as
readily as a folder. pystac reads the JSON (local or over HTTP) and is
imported here only, so commands that never see a catalogue never load it.
Every item becomes one scene, read or not: an item that cannot be read, or
whose asset cannot be chosen, fails alone in a batch, with one line naming
the item and the asset.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Optional, Sequence
from urllib.parse import urlparse

from glnet_cli.errors import InputError

#: What makes an input spec a STAC document rather than a raster.
STAC_SUFFIXES = (".json", ".geojson")
_RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".img", ".jp2")
_RASTER_MEDIA = ("image/tiff", "image/jp2", "image/vnd.stac.geotiff", "application/x-geotiff")
#: Band names assumed for a model file that names none: RGB, or RGB and near infrared.
DEFAULT_BAND_NAMES = {3: ("red", "green", "blue"), 4: ("red", "green", "blue", "nir")}


def require_pystac() -> Any:
    """The pystac module, or one line saying how to install it (it is the ``stac`` extra)."""
    try:
        import pystac
    except ImportError:
        raise InputError("STAC catalogues need pystac: pip install 'glnet[stac]' "
                         "(or pip install pystac)") from None
    return pystac


def is_stac(spec: str) -> bool:
    """A ``.json`` file or URL, or an http(s) URL that does not name a raster (a STAC API item)."""
    parsed = urlparse(spec)
    path = (parsed.path if parsed.scheme in ("http", "https") else spec).lower()
    if path.endswith(STAC_SUFFIXES):
        return True
    return parsed.scheme in ("http", "https") and not path.endswith(_RASTER_SUFFIXES)


@dataclass(frozen=True)
class StacScene:
    """One item of a STAC input: the job's scene ``key``, its output ``name``, the item."""

    #: The item's own href (``COLLECTION#ID`` for an item inside an ItemCollection).
    key: str
    #: The item id, made safe for a file name: masks are ``<name>_mask.tif``.
    name: str
    #: The pystac Item; None when it could not be read (then ``error`` says why).
    item: Any = None
    #: The item's href as a catalogue can link to it (``derived_from``); None if it has none.
    href: Optional[str] = None
    error: Optional[str] = None


@dataclass(frozen=True)
class ChosenAsset:
    """The asset of an item that a run reads, and its bands in the model's order."""

    key: str
    #: What GDAL opens: a path, ``/vsicurl/URL`` or ``s3://...``.
    path: str
    #: 1-based bands in the model's order from the asset's ``eo:bands``; None: the default.
    bands: Optional[tuple[int, ...]] = None


def read_stac(spec: str) -> tuple[list[StacScene], bool]:
    """Every item ``spec`` names (catalogues walked through their child links), and whether
    ``spec`` holds many (an ItemCollection, Catalog or Collection: a batch, as a folder is).

    Raises:
        InputError: ``spec`` itself cannot be read or is not STAC.
    """
    pystac = require_pystac()

    href = _absolute(spec)
    data = _read_json(href, spec)
    kind = data.get("type")
    if kind == "Feature":
        return [_item_scene(data, href, href)], False
    if kind == "FeatureCollection":
        try:
            items = pystac.ItemCollection.from_dict(data, preserve_dict=False).items
        except Exception as exc:  # pystac raises what its parsing meets
            raise InputError(f"{spec}: not a readable STAC ItemCollection ({_why(exc)})") from None
        return [_scene_of(item, f"{href}#{item.id}", item.get_self_href()) for item in items], True
    if kind in ("Catalog", "Collection"):
        scenes: list[StacScene] = []
        _walk(data, href, scenes, {href})
        return scenes, True
    raise InputError(f"{spec}: not a STAC Item, ItemCollection, Catalog or Collection "
                     f"(its type is {kind!r})")


def _walk(data: dict, href: str, scenes: list[StacScene], seen: set[str]) -> None:
    """Items of a catalogue and of its children, depth first in link order."""
    pystac = require_pystac()

    catalog = (pystac.Collection if data.get("type") == "Collection" else pystac.Catalog
               ).from_dict(data, href=href, preserve_dict=False)
    for link in catalog.get_links(pystac.RelType.ITEM) + catalog.get_links(pystac.RelType.CHILD):
        target = link.get_absolute_href() or link.href
        if target in seen:
            continue
        seen.add(target)
        try:
            child = _read_json(target, target)
        except InputError as exc:
            scenes.append(_broken(target, str(exc)))
            continue
        if link.rel == pystac.RelType.ITEM or child.get("type") == "Feature":
            scenes.append(_item_scene(child, target, target))
        else:
            _walk(child, target, scenes, seen)


def _item_scene(data: dict, key: str, href: Optional[str]) -> StacScene:
    pystac = require_pystac()

    try:
        item = pystac.Item.from_dict(data, href=href, preserve_dict=False)
    except Exception as exc:  # pystac raises KeyError, STACTypeError, ... for a bad item
        return _broken(key, f"{key}: not a readable STAC Item ({_why(exc)})")
    return _scene_of(item, key, href)


def _scene_of(item: Any, key: str, href: Optional[str]) -> StacScene:
    return StacScene(key, _safe_name(item.id), item, href)


def _broken(key: str, error: str) -> StacScene:
    stem = os.path.splitext(os.path.basename(urlparse(key).path.rstrip("/")))[0]
    return StacScene(key, _safe_name(stem or "item"), error=error)


def choose_asset(scene: StacScene, asset: Optional[str] = None,
                 band_names: Optional[Sequence[str]] = None) -> ChosenAsset:
    """The asset to read: ``asset``, else the one whose ``eo:bands`` hold ``band_names``, else
    the item's only raster asset.

    Raises:
        InputError: The item was not read, lacks the asset, or has no (single) raster asset.
    """
    if scene.error:
        raise InputError(scene.error)
    label = f"STAC item {scene.item.id} ({scene.key})"
    assets = scene.item.assets
    if asset is not None:
        if asset not in assets:
            raise InputError(f"{label}: has no asset {asset!r} (its assets: "
                             f"{', '.join(assets) or 'none'})")
        return _chosen(asset, assets[asset], band_names)
    rasters = {key: a for key, a in assets.items() if _is_raster(a)}
    if not rasters:
        raise InputError(f"{label}: has no raster asset (its assets: "
                         f"{', '.join(assets) or 'none'}); name one with --asset KEY")
    if band_names:
        for key, candidate in rasters.items():
            if _band_order(candidate, band_names):
                return _chosen(key, candidate, band_names)
    if len(rasters) == 1:
        key, only = next(iter(rasters.items()))
        return _chosen(key, only, band_names)
    wanted = f" and none holds {'/'.join(band_names)} by eo:bands" if band_names else ""
    raise InputError(f"{label}: has {len(rasters)} raster assets ({', '.join(rasters)}){wanted}; "
                     "choose one with --asset KEY")


def _chosen(key: str, asset: Any, band_names: Optional[Sequence[str]]) -> ChosenAsset:
    href = asset.get_absolute_href() or asset.href
    if urlparse(href).scheme in ("http", "https"):
        href = "/vsicurl/" + href
    return ChosenAsset(key, href, _band_order(asset, band_names) if band_names else None)


def _is_raster(asset: Any) -> bool:
    """Data GDAL reads as a raster: a GeoTIFF/COG or JPEG 2000, not a thumbnail or overview."""
    roles = asset.roles or []
    if "thumbnail" in roles or "overview" in roles:
        return False
    media = (asset.media_type or "").lower()
    if media:
        return media.startswith(_RASTER_MEDIA) or ("data" in roles and media.startswith("image/"))
    return urlparse(asset.href).path.lower().endswith(_RASTER_SUFFIXES)


def _band_order(asset: Any, band_names: Sequence[str]) -> Optional[tuple[int, ...]]:
    """1-based positions of ``band_names`` among the asset's bands (STAC 1.0 ``eo:bands`` or
    1.1 ``bands``), or None when it does not hold them all."""
    fields = asset.extra_fields
    bands = fields.get("eo:bands") or fields.get("bands") or []
    names = [str(b.get("common_name") or b.get("eo:common_name") or "").lower()
             for b in bands if isinstance(b, dict)]
    try:
        return tuple(names.index(name.lower()) + 1 for name in band_names)
    except ValueError:
        return None


def model_band_names(bands: int, provenance: dict) -> Optional[tuple[str, ...]]:
    """The ``eo:bands`` common names of the model's input bands, in its order.

    A model file may name them (provenance ``common_names``); otherwise a
    3-band model is taken to be RGB and a 4-band one RGB and near infrared.
    """
    named = provenance.get("common_names")
    if isinstance(named, list) and len(named) == bands and all(isinstance(n, str) for n in named):
        return tuple(named)
    return DEFAULT_BAND_NAMES.get(bands)


def _read_json(href: str, shown: str) -> dict:
    pystac = require_pystac()

    try:
        data = pystac.StacIO.default().read_json(href)
    except Exception as exc:  # urllib's HTTPError, OSError, JSONDecodeError, ...
        raise InputError(f"{shown}: cannot read the STAC document ({_why(exc)})") from None
    if not isinstance(data, dict):
        raise InputError(f"{shown}: not a STAC document (a JSON object)")
    return data


def _absolute(spec: str) -> str:
    if urlparse(spec).scheme in ("http", "https"):
        return spec
    if not os.path.isfile(spec):
        raise InputError(f"{spec}: no such file")
    return os.path.abspath(spec)


def _safe_name(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text).strip("._") or "item"


def _why(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__
