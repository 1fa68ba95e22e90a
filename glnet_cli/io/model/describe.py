"""What a model file holds, as a plain, JSON-ready dict for ``glnet info``."""

from __future__ import annotations

import os
from typing import Any


def describe_model(path: str | os.PathLike) -> dict[str, Any]:
    """Metadata of a model file (:meth:`ModelInfo.to_dict` keys plus the file header)."""
    # torch comes with the checkpoint module: imported here, so that describing a scene
    # (glnet info scene.tif) stays light.
    from glnet_cli.io.model.checkpoint import read_metadata

    path = os.fspath(path)
    info, header = read_metadata(path)
    return {"kind": "model", "path": path, **header, **info.to_dict()}
