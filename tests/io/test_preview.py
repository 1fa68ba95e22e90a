"""Quick looks: the mask's colours where the mask says so, decimated reads, a legend."""

from __future__ import annotations

import json

import numpy as np
import rasterio
from PIL import Image
from rasterio.enums import Resampling

from glnet_cli.classes import IGNORE_INDEX, generic_table
from glnet_cli.io.raster.preview import ALPHA, MAX_SIZE, preview_shape, write_preview
from tests.helpers import run_glnet, write_raster

CLASSES = generic_table(3)


def write_mask(path, values: np.ndarray, **profile):
    write_raster(path, values.astype(np.uint8), nodata=IGNORE_INDEX, tiled=True, **profile)
    with rasterio.open(path, "r+") as dst:
        dst.update_tags(GLNET_CLASSES=json.dumps(CLASSES.to_list()))
    return path


def quadrants(height: int, width: int) -> np.ndarray:
    """Class 0, 1, 2 and nodata, one per quadrant."""
    mask = np.zeros((height, width), np.uint8)
    mask[:height // 2, width // 2:] = 1
    mask[height // 2:, :width // 2] = 2
    mask[height // 2:, width // 2:] = IGNORE_INDEX
    return mask


def test_preview_shape_keeps_the_aspect():
    assert preview_shape(16384, 8192) == (MAX_SIZE, 512)
    assert preview_shape(300, 200) == (300, 200)


def test_the_mask_colour_where_the_mask_says_so(tmp_path):
    scene = write_raster(tmp_path / "scene.tif", np.full((3, 64, 96), 100, np.uint8))
    mask = write_mask(tmp_path / "mask.tif", quadrants(64, 96))
    write_preview(str(tmp_path / "q.png"), scene=str(scene), mask=str(mask))
    image = np.asarray(Image.open(tmp_path / "q.png").convert("RGBA"))
    assert image.shape[1] >= 96 and image.shape[0] > 64  # the legend lies below the picture
    for (row, col), value in {(10, 10): 0, (10, 80): 1, (50, 10): 2}.items():
        colour = np.array(CLASSES.classes[value].color)
        expected = np.round((1 - ALPHA) * 100 + ALPHA * colour)
        assert (image[row, col, :3] == expected).all(), (row, col)
        assert image[row, col, 3] == 255
    assert (image[50, 80] == (100, 100, 100, 255)).all()  # nodata: the scene alone
    legend = image[64:]
    for c in CLASSES:  # every class has its swatch
        assert (legend[..., :3] == c.color).all(axis=-1).any(), c.name


def test_a_mask_alone_is_opaque_and_nodata_transparent(tmp_path):
    mask = write_mask(tmp_path / "mask.tif", quadrants(40, 40))
    result = run_glnet("info", mask, "--preview", tmp_path / "m.png")
    assert result.exit_code == 0, result.output
    assert "quick look of the mask" in result.stdout
    image = np.asarray(Image.open(tmp_path / "m.png").convert("RGBA"))
    assert (image[5, 30, :3] == CLASSES.classes[1].color).all()
    assert image[30, 30, 3] == 0


def test_info_preview_of_a_scene_stretches_other_types(tmp_path):
    ramp = np.linspace(0, 4000, 50 * 60, dtype=np.uint16).reshape(1, 50, 60)
    scene = write_raster(tmp_path / "dem.tif", ramp)
    result = run_glnet("info", scene, "--preview", tmp_path / "s.png", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["preview"]["of"] == "scene"
    image = np.asarray(Image.open(tmp_path / "s.png").convert("RGB"))
    assert image.shape == (50, 60, 3)  # no mask, no legend
    assert image[0, 0, 0] == 0 and image[-1, -1, 0] == 255
    assert (image[..., 0] == image[..., 2]).all()  # one band: grey


def test_decimated_through_the_overviews(tmp_path):
    """Overviews made, then the full resolution changed: the quick look shows the overview."""
    mask = write_mask(tmp_path / "mask.tif", np.ones((2048, 1536), np.uint8), blockxsize=256,
                      blockysize=256)
    with rasterio.open(mask, "r+") as dst:
        dst.build_overviews([2, 4], Resampling.nearest)
        dst.write(np.full((1, 2048, 1536), 2, np.uint8))
    write_preview(str(tmp_path / "q.png"), mask=str(mask))
    image = np.asarray(Image.open(tmp_path / "q.png").convert("RGB"))
    assert image.shape[1] == 768 and image.shape[0] > 1024
    assert (image[:1024, :, :] == CLASSES.classes[1].color).all()


def test_info_preview_refuses_a_model(tiny_model, tmp_path):
    result = run_glnet("info", tiny_model(), "--preview", tmp_path / "x.png")
    assert result.exit_code == 2
    assert "is a model file" in result.output
