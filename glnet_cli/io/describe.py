"""A file for ``glnet info``: a model file or a scene, whichever it turns out to be."""

from __future__ import annotations

import os
from typing import Any

from glnet_cli.errors import ModelFileError, RasterError
from glnet_cli.io.model.describe import describe_model
from glnet_cli.io.raster.describe import describe_scene

#: Extensions that make :func:`describe_file` try the file as a model first.
MODEL_EXTENSIONS = (".pt", ".pth", ".ckpt")


def describe_file(path: str | os.PathLike) -> dict[str, Any]:
    """A model file or a scene: the extension decides which is tried first, then the other.

    Raises the first reader's error when neither reads the file, so a corrupt
    ``.pt`` is reported as a model file and a garbled ``.tif`` as a raster.
    """
    path = os.fspath(path)
    readers = [describe_scene, describe_model]
    if path.lower().endswith(MODEL_EXTENSIONS):
        readers.reverse()
    try:
        return readers[0](path)
    except (ModelFileError, RasterError) as first:
        try:
            return readers[1](path)
        except (ModelFileError, RasterError):
            raise first from None
