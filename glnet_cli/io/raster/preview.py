"""Quick looks: a small PNG of a scene with its class mask drawn over it, and a legend.

People look at a result before they open a GIS, and a quick look must cost
almost nothing beside the run that made the mask: scene and mask are read
decimated (``out_shape``) to at most 1024 pixels a side, which GDAL serves
from their overviews when they have them (a COG mask always does). Pillow
(already there through torchvision) draws the legend and writes the PNG; it
is imported only here.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np
from rasterio.enums import Resampling

from glnet_cli.classes import IGNORE_INDEX, ClassInfo, ClassTable, generic_table, table_from_tags
from glnet_cli.errors import InputError
from glnet_cli.io.paths import atomic_output, check_output
from glnet_cli.io.raster.read import SINGLE_PASS_CACHE_MB, bounded_block_cache, open_raster

if TYPE_CHECKING:
    from PIL import Image

#: Longest side of a quick look's picture, in pixels.
MAX_SIZE = 1024
#: Opacity of the class colours over the scene.
ALPHA = 0.5
#: Height of one legend row, its swatch and the padding, in pixels.
ROW, SWATCH, PAD = 16, 10, 4
#: Legends with more classes than this list only those the quick look shows.
LEGEND_ALL_UP_TO = 24


def preview_shape(height: int, width: int, max_size: int = MAX_SIZE) -> tuple[int, int]:
    """The quick look's (height, width): the raster's, shrunk to ``max_size`` on its long side."""
    scale = min(1.0, max_size / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def write_preview(path: str, *, scene: Optional[str] = None, mask: Optional[str] = None,
                  bands: Optional[Sequence[int]] = None, overwrite: bool = False,
                  max_size: int = MAX_SIZE) -> None:
    """Write the PNG quick look of ``scene``, ``mask`` or the mask over its scene.

    ``bands`` are the scene's bands to show (1-based; default: the first three,
    or the first as grey). The mask's colours and names come from the class
    table glnet writes into it, else from its colour table.
    """
    grid = mask or scene
    if grid is None:
        raise InputError("a quick look needs a scene, a mask or both")
    check_output(path, overwrite)
    with bounded_block_cache(SINGLE_PASS_CACHE_MB):
        with open_raster(grid) as src:
            shape = preview_shape(src.height, src.width, max_size)
        picture = np.zeros(shape + (4,), np.uint8)
        if scene is not None:
            rgb, valid = read_scene(scene, shape, bands)
            picture[..., :3] = rgb
            picture[..., 3] = np.where(valid, 255, 0)
        classes: Optional[ClassTable] = None
        if mask is not None:
            classes, values = read_mask(mask, shape)
            _overlay(picture, values, classes, opaque=scene is None)
            shown = np.unique(values)
            legend = [c for c in classes if len(classes) <= LEGEND_ALL_UP_TO or c.id in shown]
        image = _with_legend(picture, legend if classes is not None else [])
    with atomic_output(path, ".png", overwrite=overwrite) as tmp:
        image.save(tmp, format="PNG")


def read_scene(path: str, shape: tuple[int, int],
               bands: Optional[Sequence[int]] = None) -> tuple[np.ndarray, np.ndarray]:
    """(h, w, 3) uint8 colours and (h, w) validity of ``path`` decimated to ``shape``.

    Byte scenes are shown as they are; others stretched per band between the
    2nd and 98th percentiles of their valid pixels.
    """
    with open_raster(path) as src:
        chosen = list(bands or ())[:3] or list(range(1, min(src.count, 3) + 1))
        if len(chosen) < 3:
            chosen = chosen[:1] * 3
        out = (len(chosen),) + shape
        data = src.read(chosen, out_shape=out, resampling=Resampling.average)
        valid = (src.read_masks(chosen, out_shape=out, resampling=Resampling.nearest) > 0).all(0)
    if data.dtype.kind == "f":
        valid &= np.isfinite(data).all(0)
        data = np.where(np.isfinite(data), data, 0)
    if data.dtype != np.uint8:
        data = np.stack([_stretch(band, valid) for band in data])
    return np.moveaxis(data, 0, -1), valid


def _stretch(band: np.ndarray, valid: np.ndarray) -> np.ndarray:
    values = band[valid] if valid.any() else band.ravel()
    low, high = np.percentile(values, (2, 98)) if values.size else (0.0, 1.0)
    scaled = (band.astype(np.float64) - low) / max(float(high - low), 1e-12) * 255
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def read_mask(path: str, shape: tuple[int, int]) -> tuple[ClassTable, np.ndarray]:
    """The class table of a mask and its classes picked (nearest) on a ``shape`` grid."""
    with open_raster(path) as src:
        if src.count != 1 or src.dtypes[0] != "uint8":
            raise InputError(f"{path}: not a class mask (one uint8 band); show it with --scene")
        values = src.read(1, out_shape=shape, resampling=Resampling.nearest)
        classes = table_from_tags(src.tags())
        if classes is None:
            try:
                colours = src.colormap(1)
            except ValueError:  # no colour table
                colours = {}
            top = int(values[values != IGNORE_INDEX].max(initial=0)) + 1
            classes = generic_table(top)
            if colours:
                classes = ClassTable.from_list([{"id": c.id, "name": c.name,
                                                 "color": colours.get(c.id, c.color)[:3]}
                                                for c in classes])
    return classes, values


def _overlay(picture: np.ndarray, values: np.ndarray, classes: ClassTable, opaque: bool) -> None:
    """Blend each class colour over the picture (or paint it, without a scene), in place."""
    lut = np.zeros((256, 3), np.float64)
    for c in classes:
        lut[c.id] = c.color
    labelled = values != IGNORE_INDEX
    colours = lut[values]
    if opaque:
        picture[..., :3] = np.where(labelled[..., None], colours, 0).astype(np.uint8)
    else:
        mixed = (1 - ALPHA) * picture[..., :3] + ALPHA * colours
        picture[..., :3] = np.where(labelled[..., None], np.round(mixed), picture[..., :3])
    picture[..., 3] = np.where(labelled, 255, picture[..., 3])


def _with_legend(picture: np.ndarray, classes: Sequence[ClassInfo]) -> Image.Image:
    """The picture with rows of colour swatches and class names below it."""
    from PIL import Image, ImageDraw, ImageFont

    height, width = picture.shape[:2]
    font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    entries = [(c, SWATCH + PAD + int(measure.textlength(c.name, font=font)) + 3 * PAD)
               for c in classes]
    canvas_width = max(width, max((w for _, w in entries), default=0) + PAD)
    rows: list[list[tuple[ClassInfo, int]]] = [[]]
    x = PAD
    for entry in entries:
        if x + entry[1] > canvas_width and rows[-1]:
            rows.append([])
            x = PAD
        rows[-1].append((entry[0], x))
        x += entry[1]
    legend_height = len(rows) * ROW + PAD if entries else 0
    canvas = Image.new("RGBA", (canvas_width, height + legend_height), (255, 255, 255, 255))
    canvas.paste(Image.fromarray(picture, "RGBA"), (0, 0))
    draw = ImageDraw.Draw(canvas)
    for index, row in enumerate(rows if entries else []):
        top = height + PAD + index * ROW
        for c, left in row:
            draw.rectangle((left, top, left + SWATCH, top + SWATCH), fill=tuple(c.color),
                           outline=(0, 0, 0))
            draw.text((left + SWATCH + PAD, top - 1), c.name, fill=(0, 0, 0), font=font)
    return canvas


def quicklook_path(mask: str) -> str:
    """``masks/a_mask.tif`` -> ``masks/a_mask.png``: the quick look lies beside its mask."""
    return os.path.splitext(mask)[0] + ".png"


def preview_file(path: str, out: str, *, overwrite: bool = False) -> str:
    """The quick look of one file (``glnet info --preview``): "mask" or "scene", as it is one.

    A mask is what glnet writes: its tags hold the class table.
    """
    with open_raster(path) as src:
        is_mask = "GLNET_CLASSES" in src.tags()
    write_preview(out, mask=path if is_mask else None, scene=None if is_mask else path,
                  overwrite=overwrite)
    return "mask" if is_mask else "scene"
