"""Reading a finished GeoTIFF back before it is published: a write cut short fails here.

GDAL does not always say when a write was lost (a full disk may show only as
a log line, or not at all), so the file on disk is the last word.
"""

from __future__ import annotations

import errno
import os
import threading
import warnings
from typing import Optional

import rasterio
from rasterio._err import CPLE_BaseError  # what GDAL's own failures raise; not re-exported
from rasterio.enums import Interleaving
from rasterio.errors import NotGeoreferencedWarning, RasterioError

from glnet_cli.io.gdal_messages import capture_gdal_messages
from glnet_cli.io.raster.windows import Box


def check_written(path: str, width: int, height: int, count: int) -> None:
    """Read a finished file back; raise ``OSError`` if it is not what was written.

    Its size, band count and data type must match, every block the TIFF index
    lists must lie inside the file, and the last block must decode: a write
    cut short fails here even when GDAL said nothing.
    """
    with capture_gdal_messages(echo=False) as messages, warnings.catch_warnings():
        # A damaged file's lost tags are this check's to report, not warnings.
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            with rasterio.open(path) as src:
                found = (src.width, src.height, src.count, src.dtypes[0])
                if found != (width, height, count, "uint8"):
                    raise OSError(errno.EIO, "the finished file reads back as {} x {} x {} {}, "
                                             "not {} x {} x {} uint8".format(
                                                 *found, width, height, count))
                problem = _block_past_the_end(src, os.path.getsize(path))
                if problem:
                    raise OSError(errno.EIO, f"the finished file is cut short: {problem}")
                block_h, block_w = src.block_shapes[0]
                row = (height - 1) // block_h * block_h
                col = (width - 1) // block_w * block_w
                src.read(window=Box(row, col, height - row, width - col).window)
        except (RasterioError, CPLE_BaseError) as exc:
            losses = messages.losses({threading.get_ident()})
            reason = losses[0].text if losses else " ".join(str(exc).split())
            raise OSError(errno.EIO, f"the finished file does not read back: {reason}") from exc


def _block_past_the_end(src: rasterio.io.DatasetReader, size: int) -> Optional[str]:
    """The first block the TIFF index places beyond the file's ``size`` bytes, if any."""
    if src.driver not in ("GTiff", "COG"):
        return None
    block_h, block_w = src.block_shapes[0]
    bands = range(1, src.count + 1) if src.interleaving == Interleaving.band else [1]
    for band in bands:
        for y in range(-(-src.height // block_h)):
            for x in range(-(-src.width // block_w)):
                offset = src.get_tag_item(f"BLOCK_OFFSET_{x}_{y}", "TIFF", bidx=band)
                length = src.get_tag_item(f"BLOCK_SIZE_{x}_{y}", "TIFF", bidx=band)
                if offset and length and int(offset) + int(length) > size:
                    return (f"block {x},{y} of band {band} ends at byte "
                            f"{int(offset) + int(length)}, the file has {size}")
    return None
