"""``--co KEY=VALUE``: checked against the output driver's own option list, before any work.

GDAL ignores an option it does not know or a value it does not accept with a
warning, so a typo gives an uncompressed file after hours of work. Each GDAL
driver publishes what it accepts (``DMD_CREATIONOPTIONLIST``: names, types,
enumerated values, bounds); rasterio does not expose it, so it is read from
the very GDAL library rasterio runs on (through ctypes, see
:func:`glnet_cli.io.gdal_messages.rasterio_gdal`).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from typing import Iterable, Optional

from glnet_cli.errors import InputError
from glnet_cli.io.gdal_messages import rasterio_gdal

log = logging.getLogger(__name__)

#: TIFF tiles must be a multiple of this many pixels wide and high.
TILE_MULTIPLE = 16

_BOOLEAN = frozenset({"YES", "NO", "TRUE", "FALSE", "ON", "OFF", "1", "0"})


@dataclass(frozen=True)
class OptionSpec:
    """One creation option as the driver describes it."""

    name: str
    type: str  # int, unsigned int, float, boolean, string, string-select
    #: The values a string-select option accepts, as the driver spells them.
    choices: tuple[str, ...] = ()
    #: Other accepted spellings (``alias`` / ``aliasOf`` values), upper case.
    aliases: frozenset[str] = frozenset()
    minimum: Optional[float] = None
    maximum: Optional[float] = None

    def problem(self, value: str) -> Optional[str]:
        """Why ``value`` is refused, or None when the driver accepts it."""
        if self.type == "string-select":
            if value.upper() in {c.upper() for c in self.choices} | self.aliases:
                return None
            return f"{self.name} must be one of {', '.join(self.choices)}"
        if self.type == "boolean":
            return None if value.upper() in _BOOLEAN else f"{self.name} takes YES or NO"
        if self.type in ("int", "unsigned int", "integer"):
            try:
                number: float = int(value)
            except ValueError:
                return f"{self.name} takes a whole number"
        elif self.type == "float":
            try:
                number = float(value)
            except ValueError:
                return f"{self.name} takes a number"
        else:
            return None
        if self.minimum is not None and number < self.minimum:
            return f"{self.name} must be at least {self.minimum:g}"
        if self.maximum is not None and number > self.maximum:
            return f"{self.name} must be at most {self.maximum:g}"
        return None


def parse_option_list(xml: str) -> dict[str, OptionSpec]:
    """A driver's ``<CreationOptionList>`` XML as specs keyed by upper-case name."""
    specs = {}
    for option in ElementTree.fromstring(xml).iter("Option"):
        values = list(option.iter("Value"))
        aliases = {v.get(attr, "").upper() for v in values for attr in ("alias", "aliasOf")}
        specs[option.get("name", "").upper()] = OptionSpec(
            name=option.get("name", ""), type=option.get("type", "string"),
            choices=tuple((v.text or "").strip() for v in values),
            aliases=frozenset(aliases - {""}),
            minimum=_number(option.get("min")), maximum=_number(option.get("max")))
    return specs


def _number(text: Optional[str]) -> Optional[float]:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


@functools.lru_cache(maxsize=None)
def driver_options(driver: str) -> Optional[dict[str, OptionSpec]]:
    """The creation options ``driver`` accepts; None when GDAL cannot be asked."""
    xml = _creation_option_list(driver)
    return parse_option_list(xml) if xml else None


def _creation_option_list(driver: str) -> Optional[str]:
    import rasterio

    gdal = rasterio_gdal()
    get_driver = getattr(gdal, "GDALGetDriverByName", None)
    get_item = getattr(gdal, "GDALGetMetadataItem", None)
    if get_driver is None or get_item is None:
        log.debug("cannot read GDAL's creation option list: no GDAL library found")
        return None
    get_driver.restype, get_driver.argtypes = ctypes.c_void_p, [ctypes.c_char_p]
    get_item.restype = ctypes.c_char_p
    get_item.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
    with rasterio.Env():  # registers the drivers
        handle = get_driver(driver.encode())
        xml = get_item(handle, b"DMD_CREATIONOPTIONLIST", None) if handle else None
    return xml.decode("utf-8", "replace") if xml else None


def check_options(options: Iterable[tuple[str, str]], driver: str) -> None:
    """Refuse any option ``driver`` does not know, or a value it would ignore.

    Tile sizes are also checked against TIFF's rule (multiples of 16 pixels),
    which GDAL's list does not state.
    """
    specs = driver_options(driver)
    options = list(options)
    for key, value in options:
        problem = None
        if specs is not None:
            spec = specs.get(key.upper())
            problem = (spec.problem(value) if spec is not None else
                       f"the {driver} driver has no creation option {key} "
                       f"(it has {', '.join(sorted(specs))})")
        if problem is None and _is_tile_size(key, options, driver):
            problem = _tile_size_problem(key, value)
        if problem:
            raise InputError(f"--co {key}={value}: {problem}")


def _is_tile_size(key: str, options: list[tuple[str, str]], driver: str) -> bool:
    key = key.upper()
    if driver == "COG":
        return key == "BLOCKSIZE"
    tiled = dict((k.upper(), v.upper()) for k, v in options).get("TILED", "YES")
    return key in ("BLOCKXSIZE", "BLOCKYSIZE") and tiled not in ("NO", "FALSE", "OFF", "0")


def _tile_size_problem(key: str, value: str) -> Optional[str]:
    try:
        size = int(value)
    except ValueError:
        return f"{key} takes a whole number"
    if size <= 0 or size % TILE_MULTIPLE:
        return (f"tiles must be a positive multiple of {TILE_MULTIPLE} pixels wide and high "
                "(e.g. 256 or 512)")
    return None


def cog_options(options: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """GeoTIFF-style tile sizes as the COG driver names them (its tiles are square)."""
    options = [(k.upper(), v) for k, v in options]
    sizes = {k: v for k, v in options if k in ("BLOCKXSIZE", "BLOCKYSIZE")}
    if len(set(sizes.values())) > 1:
        raise InputError(f"--co BLOCKXSIZE={sizes['BLOCKXSIZE']} --co "
                         f"BLOCKYSIZE={sizes['BLOCKYSIZE']}: --cog tiles are square; "
                         "give --co BLOCKSIZE=N")
    mapped = [(k, v) for k, v in options if k not in sizes]
    if sizes and "BLOCKSIZE" not in dict(mapped):
        mapped.append(("BLOCKSIZE", next(iter(sizes.values()))))
    return mapped
