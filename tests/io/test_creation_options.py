"""``--co``: checked against the driver's own option list; under --cog, given to the COG driver."""

from __future__ import annotations

import pytest
import rasterio

from glnet_cli.errors import InputError
from glnet_cli.io.raster.creation_options import (
    check_options,
    cog_options,
    driver_options,
    parse_option_list,
)
from glnet_cli.io.raster.writer import output_options
from tests.helpers import rule_scene, run_glnet, write_raster

GTIFF_COMPRESSORS = ("NONE, LZW, PACKBITS, JPEG, CCITTRLE, CCITTFAX3, CCITTFAX4, DEFLATE, LZMA, "
                     "ZSTD, WEBP, LERC, LERC_DEFLATE, LERC_ZSTD")


def test_the_option_list_comes_from_rasterios_gdal():
    gtiff, cog = driver_options("GTiff"), driver_options("COG")
    assert {"COMPRESS", "TILED", "BLOCKXSIZE", "BIGTIFF"} <= set(gtiff)
    assert "ZSTD" in gtiff["COMPRESS"].choices  # rasterio's GDAL, not fiona's older copy
    assert cog["BLOCKSIZE"].minimum == 128 and "TILED" not in cog
    assert driver_options("NoSuchDriver") is None


def test_parse_option_list_reads_types_values_aliases_and_bounds():
    specs = parse_option_list(
        "<CreationOptionList><Option name='PREDICTOR' type='string-select'><Value>NO</Value>"
        "<Value alias='2'>STANDARD</Value></Option><Option name='SIZE' type='int' min='128' "
        "max='4096'/><Option name='FAST' type='boolean'/></CreationOptionList>")
    assert specs["PREDICTOR"].problem("2") is None
    assert specs["PREDICTOR"].problem("standard") is None
    assert specs["PREDICTOR"].problem("7") == "PREDICTOR must be one of NO, STANDARD"
    assert specs["SIZE"].problem("64") == "SIZE must be at least 128"
    assert specs["SIZE"].problem("8192") == "SIZE must be at most 4096"
    assert specs["SIZE"].problem("big") == "SIZE takes a whole number"
    assert specs["FAST"].problem("maybe") == "FAST takes YES or NO"
    assert specs["FAST"].problem("on") is None


@pytest.mark.parametrize("options, driver, message", [
    ([("COMPRESS", "NOPE")], "GTiff", f"--co COMPRESS=NOPE: COMPRESS must be one of "
                                      f"{GTIFF_COMPRESSORS}"),
    ([("BLOCKXSIZE", "7")], "GTiff", "--co BLOCKXSIZE=7: tiles must be a positive multiple of 16 "
                                     "pixels wide and high (e.g. 256 or 512)"),
    ([("BLOCKSIZE", "200")], "COG", "--co BLOCKSIZE=200: tiles must be a positive multiple of "
                                    "16 pixels"),
    ([("BLOCKSIZE", "64")], "COG", "--co BLOCKSIZE=64: BLOCKSIZE must be at least 128"),
    ([("ZLEVEL", "high")], "GTiff", "--co ZLEVEL=high: ZLEVEL takes a whole number"),
    ([("TILED", "YES")], "COG", "--co TILED=YES: the COG driver has no creation option TILED "
                                "(it has ADD_ALPHA, "),
])
def test_refused_options_name_the_problem(options, driver, message):
    with pytest.raises(InputError) as caught:
        check_options(options, driver)
    assert str(caught.value).startswith(message)


def test_strips_may_have_any_height():
    check_options([("TILED", "NO"), ("BLOCKYSIZE", "7")], "GTiff")


def test_geotiff_tile_sizes_become_the_cog_blocksize():
    assert cog_options([("blockxsize", "256"), ("BLOCKYSIZE", "256"), ("COMPRESS", "ZSTD")]) == \
        [("COMPRESS", "ZSTD"), ("BLOCKSIZE", "256")]
    with pytest.raises(InputError, match="--cog tiles are square; give --co BLOCKSIZE=N"):
        cog_options([("BLOCKXSIZE", "256"), ("BLOCKYSIZE", "512")])


def test_output_options_send_the_users_options_to_the_final_driver():
    plain = output_options([("compress", "lzw")], cog=False)
    assert plain.gtiff["COMPRESS"] == "lzw" and plain.cog is None
    cog = output_options([("COMPRESS", "ZSTD"), ("BLOCKXSIZE", "256")], cog=True)
    assert cog.gtiff["COMPRESS"] == "DEFLATE"  # the streamed GeoTIFF keeps the defaults
    assert cog.cog == {"COMPRESS": "ZSTD", "BLOCKSIZE": "256"}


def test_options_gdal_would_ignore_for_a_mask_are_refused():
    with pytest.raises(InputError, match=r"^--co PHOTOMETRIC=RGB: GDAL would not honour these "
                                         r"options: PHOTOMETRIC=RGB value does not correspond "
                                         r"to number of bands \(1\)"):
        output_options([("PHOTOMETRIC", "RGB")], cog=False)


def test_bad_options_end_in_one_line_before_any_work(tmp_path):
    scene = write_raster(tmp_path / "scene.tif", rule_scene(40, 40))
    # The model does not exist: the options are refused before it is even looked for.
    result = run_glnet("segment", "-q", scene, "-o", tmp_path / "m.tif", "-m",
                       tmp_path / "none.pt", "--co", "BLOCKXSIZE=7")
    assert result.exit_code == 2
    assert result.stderr == ("glnet: error: --co BLOCKXSIZE=7: tiles must be a positive multiple "
                             "of 16 pixels wide and high (e.g. 256 or 512)\n")
    result = run_glnet("segment", "-q", scene, "-o", tmp_path / "m.tif", "-m",
                       tmp_path / "none.pt", "--co", "COMPRESS=NOPE")
    assert result.exit_code == 2
    assert result.stderr == (f"glnet: error: --co COMPRESS=NOPE: COMPRESS must be one of "
                             f"{GTIFF_COMPRESSORS}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


def test_cog_gets_the_options_and_probabilities_are_a_cog_too(model, tmp_path):
    scene = write_raster(tmp_path / "scene.tif", rule_scene(70, 90))
    mask, probs = tmp_path / "mask.tif", tmp_path / "probs.tif"
    result = run_glnet("segment", "-q", scene, "-o", mask, "-m", model, "--cog",
                       "--probabilities", probs, "--co", "COMPRESS=ZSTD", "--co", "BLOCKXSIZE=256",
                       "--co", "BLOCKYSIZE=256")
    assert result.exit_code == 0, result.output
    for path, bands in ((mask, 1), (probs, 4)):
        with rasterio.open(path) as src:
            assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            assert src.compression.name == "zstd"
            assert src.block_shapes == [(256, 256)] * bands
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.tif", "probs.tif", "scene.tif"]
