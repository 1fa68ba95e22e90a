"""The architecture a training run builds: as given, else the starting model's, else defaults
(their sizes fitted to the tiles)."""

from __future__ import annotations

from typing import Any, Optional

from glnet_cli.errors import InputError
from glnet_cli.io.model.checkpoint import ModelInfo
from glnet_cli.training.config import TrainConfig
from glnet_cli.training.tiles import TileInfo

#: Architecture defaults, used unless --init/--resume names a model. The sizes
#: shrink to fit smaller tiles (see :func:`fitted_sizes`).
DEFAULTS: dict[str, Any] = {"backbone": "resnet50", "width": 256, "size_g": 508, "size_p": 508}
#: FPN width for the small trunks: their C5 has 512 channels, not 2048, and at
#: width 64 a ResNet-18 GLNet trains 2.8x faster than at 256 (one stage-2 step).
SMALL_TRUNK_WIDTH = {"resnet18": 64, "resnet34": 64}


def choose_architecture(config: TrainConfig, known: Optional[ModelInfo]
                        ) -> tuple[str, int, Optional[int], Optional[int]]:
    """backbone, width, size_g, size_p: as given, else the starting model's, else defaults
    (sizes None: fitted to the tiles)."""
    values = dict(DEFAULTS)
    if known:
        values = {"backbone": known.config.backbone, "width": known.config.width,
                  "size_g": known.size_g, "size_p": known.size_p}
    for name, value in values.items():
        given = getattr(config, name)
        if known and given is not None and given != value:
            raise InputError(f"--{name.replace('_', '-')} {given} differs from the starting "
                             f"model's {value}; leave it out")
        values[name] = value if given is None else given
        if not known and given is None and name == "width":
            values[name] = SMALL_TRUNK_WIDTH.get(values["backbone"], value)
        if not known and given is None and name.startswith("size"):
            values[name] = None  # fitted to the tiles once they are read
    return values["backbone"], values["width"], values["size_g"], values["size_p"]


def fitted_sizes(tiles: list[TileInfo], size_g: Optional[int], size_p: Optional[int]
                 ) -> tuple[int, int]:
    """Default sizes for tiles smaller than the paper's: the global view no larger than
    the smallest tile, a crop half of it, so that GLNet still has crops to work with."""
    side = min(min(t.height, t.width) for t in tiles)
    size_g = size_g or min(DEFAULTS["size_g"], side)
    size_p = size_p or min(DEFAULTS["size_p"], max(32, side // 2 // 4 * 4))
    return size_g, size_p
