"""``glnet segment``: georeferencing, windowed reads, seamless blending, safety, errors."""

from __future__ import annotations

import copy
import functools
import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F
from rasterio.transform import Affine

from glnet_cli.errors import InputError
from glnet_cli.inference.engine import Segmenter, SegmentOptions
from glnet_cli.inference.grid import plan_scene
from glnet_cli.io.model.checkpoint import ModelFile, load_model
from tests.helpers import corrupt_raster, rule_scene, run_glnet, write_raster


@pytest.fixture(scope="session")
def models(tiny_model) -> dict[str, Path]:
    """Random tiny model files: stage-2 ones (3 and 1 bands; a third lighter to load than
    stage 3), stage-3 ones (one with a small context).

    The briefly trained ``rule_model`` (its classes follow the image) costs
    half a minute to make: only the slow lane asks for it.
    """
    return {
        "rgb": tiny_model(size_p=64, context=1024, l2g=False),
        "gray": tiny_model(bands=1, size_p=64, context=1024, l2g=False),
        "stage3": tiny_model(size_p=64, context=1024),
        "small_context": tiny_model(size_p=64, size_g=32, context=160),
    }


def segmenter(path: Path, **options) -> Segmenter:
    """A Segmenter on a fresh copy of the file's model (it prepares its model in place)."""
    return Segmenter(copy.deepcopy(_loaded(path)), torch.device("cpu"),
                     SegmentOptions(**options))


@functools.lru_cache(maxsize=4)
def _loaded(path: Path) -> ModelFile:
    """Each model file loaded once: building the network is most of a tiny run's cost."""
    return load_model(path)


# -- georeferencing ------------------------------------------------------------

@pytest.mark.parametrize("name, model", [("RGB.byte.tif", "rgb"), ("cogeo.tif", "rgb"),
                                         ("shade.tif", "gray")])
@pytest.mark.slow
def test_georeferencing_round_trip_on_real_rasters(shared_data, models, tmp_path, name, model):
    scene = shared_data / "rasterio" / name
    out = tmp_path / "mask.tif"
    result = run_glnet("segment", scene, "-o", out, "--model", models[model], "--stage", "2",
                       "--overlap", "16", "-q")
    assert result.exit_code == 0, result.output
    with rasterio.open(scene) as src, rasterio.open(out) as dst:
        assert dst.crs == src.crs and dst.transform == src.transform
        assert (dst.width, dst.height) == (src.width, src.height)
        assert dst.dtypes[0] == "uint8" and dst.nodata == 255 and dst.count == 1
        assert dst.profile["tiled"] and dst.block_shapes[0] == (512, 512)
        assert dst.compression.name == "deflate"
        assert dst.colormap(1)[0][3] == 255 and dst.colormap(1)[255] == (0, 0, 0, 0)
        names = [c["name"] for c in json.loads(dst.tags()["GLNET_CLASSES"])]
        assert names == ["class_0", "class_1", "class_2", "class_3"]
        mask = dst.read(1)
        valid = src.dataset_mask() > 0
    assert (mask[~valid] == 255).all()
    assert (mask[valid] < 4).all()
    if name == "RGB.byte.tif":  # the black collar comes out as nodata
        assert (~valid).mean() > 0.2


def test_rotated_transform_is_kept(models, tmp_path):
    rotated = Affine(0.5, 0.2, 500000.0, 0.15, -0.5, 4100000.0)
    scene = write_raster(tmp_path / "rot.tif", rule_scene(100, 120), transform=rotated)
    out = tmp_path / "mask.tif"
    assert run_glnet("segment", scene, "-o", out, "-m", models["stage3"], "-q").exit_code == 0
    with rasterio.open(out) as dst:
        assert dst.transform == rotated and dst.crs == "EPSG:32616"
        assert (dst.read(1) < 4).all()


# -- windowed reads --------------------------------------------------------------

def _full_resolution_full_reads(log, height, width):
    return [(w, s) for w, s in log
            if (w.height, w.width) == (height, width) and tuple(s) == (height, width)]


@pytest.mark.slow
def test_reads_are_windowed_and_the_global_view_decimated(shared_data, models, tmp_path):
    scene = str(shared_data / "rasterio" / "cogeo.tif")
    seg = segmenter(models["rgb"], overlap=16, stage=2)
    result = seg.run(scene, str(tmp_path / "m.tif"), record_reads=True)
    log = result.read_log
    assert not _full_resolution_full_reads(log, 1024, 1024)
    decimated = [(w, s) for w, s in log if tuple(s) != (w.height, w.width)]
    full_res = [(w, s) for w, s in log if tuple(s) == (w.height, w.width)]
    assert [(w.width, w.height, tuple(s)) for w, s in decimated] == [(1024, 1024, (64, 64))]
    assert len(full_res) == len(seg.plan(seg.inspect(scene)).crops)
    assert max(w.width * w.height for w, _ in full_res) == 64 * 64


@pytest.mark.slow
def test_large_scene_uses_blocks_at_training_scale(models, tmp_path):
    scene = write_raster(tmp_path / "big.tif", rule_scene(300, 420))
    seg = segmenter(models["small_context"], overlap=16)
    plan = seg.plan(seg.inspect(str(scene)))
    assert len(plan.blocks) > 1
    result = seg.run(str(scene), str(tmp_path / "m.tif"), record_reads=True)
    decimated = [(w, s) for w, s in result.read_log if tuple(s) != (w.height, w.width)]
    assert len(decimated) == len(plan.blocks)
    # Each global view covers one 160-pixel block (less where the scene ends).
    assert all(w.width <= 160 and w.height <= 160 for w, _ in decimated)
    assert not _full_resolution_full_reads(result.read_log, 300, 420)
    assert result.crops_run == len(plan.crops)


def test_every_crop_lies_in_its_block():
    plan = plan_scene(5000, 7000, 508, 2448, min_overlap=64)
    for block in plan.blocks:
        for index in block.crops:
            crop = plan.crops[index]
            assert block.box.intersection(crop) == crop
    assert sorted(i for b in plan.blocks for i in b.crops) == list(range(len(plan.crops)))


# -- blending ------------------------------------------------------------------

def _crop_edges(plan, shape, width: int = 2) -> np.ndarray:
    edges = np.zeros(shape, dtype=bool)
    for crop in plan.crops:
        for line in (crop.row, crop.bottom):
            edges[max(0, line - width):line + width, crop.col:crop.right] = True
        for line in (crop.col, crop.right):
            edges[crop.row:crop.bottom, max(0, line - width):line + width] = True
    return edges


def use_pixel_rule_network(seg: Segmenter) -> None:
    """Swap the network for one that calls each pixel by its locally brightest band.

    A stand-in whose output depends on the image alone, not on where a crop
    sits: any seam or misplaced crop in the engine then shows up directly.
    """
    def aggregated(local_ps3: torch.Tensor, *_) -> tuple[torch.Tensor, None]:
        never = torch.full_like(local_ps3[:, :1], -1.0)  # the model's fourth class
        return 50 * torch.cat([local_ps3, never], dim=1), None

    seg.model.local_pyramid = lambda patches, *_: SimpleNamespace(ps3=F.avg_pool2d(patches, 4))
    seg.model.aggregated = aggregated


def test_no_seams_between_two_crop_grids(models, tmp_path):
    image = rule_scene(400, 400, seed=123)
    scene = str(write_raster(tmp_path / "scene.tif", image))
    masks, plans = [], []
    for overlap in (16, 40):  # different overlaps put the crops at different offsets
        seg = segmenter(models["rgb"], overlap=overlap, stage=2)
        use_pixel_rule_network(seg)
        seg.run(scene, str(tmp_path / f"m{overlap}.tif"))
        plans.append(seg.plan(seg.inspect(scene)))
        with rasterio.open(tmp_path / f"m{overlap}.tif") as dst:
            masks.append(dst.read(1))
    assert plans[0].crops != plans[1].crops
    inner = (slice(32, -32), slice(32, -32))
    a, b = masks[0][inner], masks[1][inner]
    differ = a != b
    assert 1 - differ.mean() >= 0.99
    edges = (_crop_edges(plans[0], (400, 400)) | _crop_edges(plans[1], (400, 400)))[inner]
    assert differ[edges].mean() <= 2 * differ[~edges].mean() + 0.002
    # And the masks follow the image: the brightest band wins almost everywhere.
    assert (a == image.argmax(0)[inner]).mean() > 0.95


# -- safety ----------------------------------------------------------------------

def test_interruption_leaves_no_output_and_no_temp_file(models, tmp_path):
    scene = str(write_raster(tmp_path / "scene.tif", rule_scene(300, 300)))
    out = tmp_path / "out" / "mask.tif"
    out.parent.mkdir()
    calls = []

    def stop_after_some_tiles(done, total, **info):
        calls.append(done)
        if len(calls) == 6:
            raise KeyboardInterrupt

    seg = segmenter(models["rgb"], overlap=16, batch_size=2)
    with pytest.raises(KeyboardInterrupt):
        seg.run(scene, str(out), progress=stop_after_some_tiles, probabilities=str(
            tmp_path / "out" / "probs.tif"))
    assert os.listdir(out.parent) == []


def test_existing_output_needs_overwrite(models, tmp_path):
    scene = write_raster(tmp_path / "scene.tif", rule_scene(80, 80))
    out = tmp_path / "mask.tif"
    out.write_bytes(b"keep me")
    result = run_glnet("segment", scene, "-o", out, "-m", models["rgb"], "-q")
    assert result.exit_code == 2 and "mask.tif: already exists (use --overwrite" in result.stderr
    assert out.read_bytes() == b"keep me"
    assert run_glnet("segment", scene, "-o", out, "-m", models["rgb"], "-q",
                     "--overwrite").exit_code == 0
    with rasterio.open(out) as dst:
        assert dst.shape == (80, 80)


# -- errors ----------------------------------------------------------------------

def _one_error_line(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("glnet: error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in errors[0]


def test_missing_and_non_raster_inputs(models, tmp_path):
    out = tmp_path / "mask.tif"
    _one_error_line(run_glnet("segment", tmp_path / "nope.tif", "-o", out, "-m", models["rgb"]),
                    "nope.tif: no such file")
    text = tmp_path / "notes.tif"
    text.write_text("hello")
    _one_error_line(run_glnet("segment", text, "-o", out, "-m", models["rgb"]),
                    "notes.tif: not a raster GDAL can read")
    assert not out.exists()


def test_data_that_fails_to_decode_part_way(models, tmp_path):
    path = corrupt_raster(tmp_path / "broken.tif")
    out = tmp_path / "mask.tif"
    result = run_glnet("segment", path, "-o", out, "-m", models["rgb"], "-q", "--overlap", "16")
    _one_error_line(result, "broken.tif: reading rows")
    assert sorted(os.listdir(tmp_path)) == ["broken.tif"]


def test_band_count_and_band_selection(models, tmp_path):
    gray = write_raster(tmp_path / "gray.tif", rule_scene(80, 80)[:1])
    out = tmp_path / "mask.tif"
    _one_error_line(run_glnet("segment", gray, "-o", out, "-m", models["rgb"]),
                    "gray.tif: has 1 band(s), the model needs 3", "--bands")
    assert run_glnet("segment", gray, "-o", out, "-m", models["rgb"], "--bands", "1,1,1",
                     "-q").exit_code == 0
    _one_error_line(run_glnet("segment", gray, "-o", tmp_path / "x.tif", "-m", models["rgb"],
                              "--bands", "3,2,1"), "band 3 does not exist")


def test_band_order_follows_bands_option(models, tmp_path):
    image = rule_scene(128, 128, seed=7)
    normal = write_raster(tmp_path / "rgb.tif", image)
    swapped = write_raster(tmp_path / "bgr.tif", image[::-1].copy())
    for scene, bands in ((normal, "1,2,3"), (swapped, "3,2,1")):
        assert run_glnet("segment", scene, "-o", tmp_path / f"{scene.stem}.mask.tif", "-m",
                         models["rgb"], "--bands", bands, "-q").exit_code == 0
    with (rasterio.open(tmp_path / "rgb.mask.tif") as a,
          rasterio.open(tmp_path / "bgr.mask.tif") as b):
        assert len(np.unique(a.read(1))) > 1  # the classes follow the bands
        assert np.array_equal(a.read(1), b.read(1))


def test_data_type_the_model_was_not_trained_on(models, tmp_path):
    scene = write_raster(tmp_path / "u16.tif", rule_scene(80, 80).astype(np.uint16) * 200)
    _one_error_line(run_glnet("segment", scene, "-o", tmp_path / "m.tif", "-m", models["rgb"]),
                    "u16.tif: the model was trained on uint8", "this scene is uint16")


def test_output_folder_missing(models, tmp_path):
    scene = write_raster(tmp_path / "scene.tif", rule_scene(80, 80))
    _one_error_line(run_glnet("segment", scene, "-o", tmp_path / "no" / "m.tif", "-m",
                              models["rgb"]), "output folder", "does not exist")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_output_folder_not_writable(models, tmp_path):
    scene = write_raster(tmp_path / "scene.tif", rule_scene(80, 80))
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    _one_error_line(run_glnet("segment", scene, "-o", locked / "m.tif", "-m", models["rgb"]),
                    "not writable")


def test_model_from_environment_or_a_clear_error(models, tmp_path):
    scene = write_raster(tmp_path / "scene.tif", rule_scene(80, 80))
    out = tmp_path / "mask.tif"
    _one_error_line(run_glnet("segment", scene, "-o", out), "--model", "GLNET_MODEL")
    result = run_glnet("segment", scene, "-o", out, "-q", env={"GLNET_MODEL": str(models["rgb"])})
    assert result.exit_code == 0 and out.exists()
    _one_error_line(run_glnet("segment", scene, "-o", tmp_path / "m2.tif", "-m",
                              tmp_path / "missing.pt"), "missing.pt: model file not found")


def test_stage_choice(models, tmp_path):
    scene = write_raster(tmp_path / "scene.tif", rule_scene(80, 80))
    _one_error_line(run_glnet("segment", scene, "-o", tmp_path / "m.tif", "-m", models["rgb"],
                              "--stage", "3"), "--stage 3 needs a model trained through stage 3")
    assert segmenter(models["stage3"]).stage == 3 and segmenter(models["rgb"]).stage == 2


# -- cases that are not errors -----------------------------------------------------

def test_all_nodata_scene_writes_all_255(models, tmp_path):
    scene = write_raster(tmp_path / "empty.tif", np.zeros((3, 90, 70), np.uint8), nodata=0)
    out = tmp_path / "mask.tif"
    result = run_glnet("segment", scene, "-o", out, "-m", models["rgb"], "-q")
    assert result.exit_code == 0, result.output
    assert "has no valid pixels; wrote an all-nodata mask" in result.stderr
    with rasterio.open(out) as dst:
        assert (dst.read(1) == 255).all()
    assert "0 crops run" in result.stdout


def test_scene_without_crs_warns_and_keeps_transform(models, tmp_path):
    transform = Affine(2.0, 0, 100, 0, -2.0, 500)
    scene = write_raster(tmp_path / "nocrs.tif", rule_scene(70, 90), transform=transform,
                         crs=None)
    out = tmp_path / "mask.tif"
    result = run_glnet("segment", scene, "-o", out, "-m", models["rgb"], "-q")
    assert result.exit_code == 0
    assert "nocrs.tif: has no CRS" in result.stderr
    with rasterio.open(out) as dst:
        assert dst.crs is None and dst.transform == transform


def test_scene_smaller_than_one_crop(shared_data, models, tmp_path):
    out = tmp_path / "mask.tif"
    result = run_glnet("segment", shared_data / "rasterio" / "byte.tif", "-o", out, "-m",
                       models["gray"], "-q")
    assert result.exit_code == 0, result.output
    with rasterio.open(shared_data / "rasterio" / "byte.tif") as src, rasterio.open(out) as dst:
        assert dst.shape == (20, 20) and dst.transform == src.transform
        valid = src.dataset_mask() > 0
        assert (dst.read(1)[valid] < 4).all()


def test_small_scene_matches_its_padded_self(models, tmp_path):
    """Padding a small scene ourselves gives the same classes on the original pixels."""
    image = rule_scene(40, 50, seed=3)
    small = write_raster(tmp_path / "small.tif", image)
    padded_image = np.zeros((3, 64, 64), np.uint8)
    padded_image[:, :40, :50] = image
    valid = np.zeros((64, 64), np.uint8)
    valid[:40, :50] = 255
    padded = write_raster(tmp_path / "padded.tif", padded_image)
    with rasterio.open(padded, "r+") as dst:
        dst.write_mask(valid)
    seg = segmenter(models["rgb"])
    seg.run(str(small), str(tmp_path / "a.tif"))
    seg.run(str(padded), str(tmp_path / "b.tif"))
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "b.tif") as b:
        assert len(np.unique(a.read(1))) > 1  # classes that follow the image
        assert np.array_equal(a.read(1), b.read(1)[:40, :50])


# -- outputs -------------------------------------------------------------------------

@pytest.mark.slow
def test_cog_probabilities_and_creation_options(rule_model, tmp_path):
    scene = write_raster(tmp_path / "scene.tif", rule_scene(600, 560))
    out, probs = tmp_path / "mask.tif", tmp_path / "probs.tif"
    result = run_glnet("segment", scene, "-o", out, "-m", rule_model, "--cog",
                       "--probabilities", probs, "-q")
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as dst, rasterio.open(probs) as p:
        assert dst.overviews(1) == [2]
        assert dst.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert dst.colormap(1)[1][3] == 255
        mask, stack = dst.read(1), p.read()
    assert stack.shape == (3, 600, 560) and stack.dtype == np.uint8
    total = stack.astype(int).sum(axis=0)
    assert np.abs(total - 255).max() <= 3
    assert np.array_equal(stack.argmax(axis=0)[mask != 255], mask[mask != 255]) or \
        (stack.argmax(axis=0) == mask).mean() > 0.999
    lzw = tmp_path / "lzw.tif"
    assert run_glnet("segment", scene, "-o", lzw, "-m", rule_model, "--co", "COMPRESS=LZW",
                     "-q").exit_code == 0
    with rasterio.open(lzw) as dst:
        assert dst.compression.name == "lzw"


def test_dry_run_prints_the_plan_and_writes_nothing(models, tmp_path):
    scene = write_raster(tmp_path / "scene.tif", rule_scene(300, 420))
    out = tmp_path / "mask.tif"
    result = run_glnet("segment", scene, "-o", out, "-m", models["small_context"], "--dry-run")
    assert result.exit_code == 0, result.output
    assert "context blocks" in result.stdout and "local crops" in result.stdout
    assert "estimated peak memory" in result.stdout
    assert not out.exists()


def test_segment_help_has_an_example():
    result = run_glnet("segment", "--help")
    assert result.exit_code == 0 and "glnet segment scene.tif -o mask.tif" in result.output


def test_library_raises_raster_error_for_missing_scene(models, tmp_path):
    with pytest.raises(InputError, match="no such file"):
        segmenter(models["rgb"]).run(str(tmp_path / "x.tif"), str(tmp_path / "m.tif"))
