"""PNG files drawn by a plotting library, published atomically once checked to be PNGs.

A viewer refreshing the picture while it is redrawn never sees a half-written
file; the drawing library is handed a temp path beside the target.
"""

from __future__ import annotations

from typing import Callable

from glnet_cli.io.paths import atomic_output

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_png(path: str, draw: Callable[[str], None], *, drawer: str, overwrite: bool) -> None:
    """Have ``draw`` write a PNG to a temp path, and publish it as ``path``.

    ``drawer`` names the library in the error raised when the file is no PNG.
    """
    def check(tmp: str) -> None:
        with open(tmp, "rb") as f:
            if f.read(len(_PNG_SIGNATURE)) != _PNG_SIGNATURE:
                raise ValueError(f"{tmp}: {drawer} did not write a PNG")

    with atomic_output(path, ".png", overwrite=overwrite, verify=check) as tmp:
        draw(tmp)
