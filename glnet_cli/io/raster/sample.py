"""Do a raster's pixels read? Its first and last, for ``glnet info``'s description and fit.

A file cut short, or with a damaged block, keeps a header that reads fine:
only its pixels tell. The last block is the one a truncation loses first.
"""

from __future__ import annotations

import os

import rasterio
from rasterio.errors import RasterioError

from glnet_cli.errors import RasterError
from glnet_cli.io.raster.windows import Box


def read_sample(src: rasterio.DatasetReader, path: str) -> None:
    """Read the first and the last pixel of every band of ``src`` (so the blocks that hold them).

    Raises:
        RasterError: A block cannot be read.
    """
    for col, row in ((0, 0), (src.width - 1, src.height - 1)):
        try:
            src.read(window=Box(row, col, 1, 1).window)
        except RasterioError as exc:
            # GDAL's own words are in the cause: "band 1: IReadBlock failed at X offset ..."
            detail = str(exc.__cause__ or exc).strip().rstrip(".").removeprefix(
                f"{os.path.basename(path)}, ")
            raise RasterError(f"{path}: cannot read its pixels ({detail}); the file is "
                              "truncated or corrupt: copy or download it again") from None


def check_pixels(path: str) -> None:
    """Open ``path`` and :func:`read_sample` it.

    Raises:
        RasterError: A block cannot be read.
    """
    with rasterio.open(path) as src:
        read_sample(src, path)
