"""Training data: discovery, pair checks, windowed reads, augmentation, sampling."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import Affine

from glnet_cli.classes import DEEPGLOBE, IGNORE_INDEX, generic_table
from glnet_cli.errors import DataError, InputError
from glnet_cli.io.windows import Box
from glnet_cli.io.checkpoint import InputScaling
from glnet_cli.training.data import (Augment, PairProblem, ReadSpec, TileDataset, TileInfo,
                                     check_tiles, discover_tiles, epoch_batches, infer_classes,
                                     inspect_pairs, measure_scaling, settle_problems,
                                     split_by_name)
from tests.helpers import DEFAULT_TRANSFORM, write_raster

SIZES = [(64, 96), (80, 80), (96, 64)]


def tile_arrays(height: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A 3-band uint8 image whose colour gives away the class (0, 1, 2) of each pixel."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((height, width), np.uint8)
    mask[height // 4: height // 2, width // 3: 2 * width // 3] = 1
    mask[height // 2 + 8:, : width // 4] = 2
    mask[: height // 5, width // 2:] = 2
    colours = np.array([[60, 90, 60], [200, 190, 180], [30, 60, 160]], np.uint8)
    image = colours[mask].transpose(2, 0, 1).astype(np.int16)
    image += rng.integers(-25, 25, image.shape).astype(np.int16)
    return np.clip(image, 0, 255).astype(np.uint8), mask


def make_tiles(root: Path, count: int = 6, layout: str = "folders", seed: int = 0) -> Path:
    """``count`` tiles of 64-96 pixels: GeoTIFFs in images/ + masks/, or DeepGlobe JPEG/PNG."""
    if layout == "folders":
        (root / "images").mkdir(parents=True)
        (root / "masks").mkdir()
    else:
        root.mkdir(parents=True)
    for i in range(count):
        image, mask = tile_arrays(*SIZES[i % len(SIZES)], seed=seed + i)
        if layout == "folders":
            write_raster(root / "images" / f"tile{i}.tif", image)
            write_raster(root / "masks" / f"tile{i}.tif", mask)
        else:
            rgb = np.array([DEEPGLOBE.classes[c].color for c in (1, 2, 5)], np.uint8)[mask]
            write_plain(root / f"{i}_sat.jpg", image)
            write_plain(root / f"{i}_mask.png", rgb.transpose(2, 0, 1))
    return root


def write_plain(path: Path, array: np.ndarray) -> None:
    """A PNG or JPEG without georeferencing, as DeepGlobe ships its tiles."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        write_raster(path, array, crs=None, transform=Affine.identity(),
                     driver="JPEG" if path.suffix == ".jpg" else "PNG")


def checked(root: Path, classes=None, min_size: int = 1):
    pairs, problems = discover_tiles(root)
    infos = inspect_pairs(pairs, classes, min_size)
    classes = classes or infer_classes([i for i in infos if isinstance(i, TileInfo)], 255)
    tiles, more, bands = check_tiles(infos, classes, 255)
    return tiles, problems + more, bands, classes


def test_discovers_both_layouts(tmp_path):
    pairs, problems = discover_tiles(make_tiles(tmp_path / "a", 3))
    assert [p.name for p in pairs] == ["tile0.tif", "tile1.tif", "tile2.tif"] and not problems
    assert pairs[0].mask.endswith("masks/tile0.tif")
    pairs, problems = discover_tiles(make_tiles(tmp_path / "b", 2, layout="deepglobe"))
    assert [(Path(p.image).name, Path(p.mask).name) for p in pairs] == [
        ("0_sat.jpg", "0_mask.png"), ("1_sat.jpg", "1_mask.png")] and not problems


def test_lone_files_and_missing_folder(tmp_path):
    root = make_tiles(tmp_path / "t", 2)
    (root / "images" / "tile0.tif").rename(root / "images" / "orphan.tif")
    (root / "images" / "extra.png").write_bytes(b"")
    (root / "images" / "tile1.png").write_bytes(b"")
    pairs, problems = discover_tiles(root)
    assert [p.name for p in pairs] == ["tile1.png"]
    assert {str(p) for p in problems} == {"orphan.tif: image has no mask",
                                          "extra.png: image has no mask",
                                          "tile0.tif: mask has no image",
                                          "tile1.tif: same name as tile1.png; keep one of them"}
    with pytest.raises(InputError, match="nowhere: no such folder"):
        discover_tiles(tmp_path / "nowhere")
    with pytest.raises(InputError, match="no tiles found"):
        discover_tiles(root / "images" / ".." / "..")


def test_every_bad_pair_is_named(tmp_path):
    root = make_tiles(tmp_path / "t", 6)
    image, mask = tile_arrays(64, 96, 9)
    write_raster(root / "masks" / "tile0.tif", mask[:, :80])  # size
    write_raster(root / "masks" / "tile1.tif", tile_arrays(80, 80, 1)[1],
                 transform=DEFAULT_TRANSFORM @ Affine.translation(3, 0))  # transform
    write_raster(root / "masks" / "tile2.tif", tile_arrays(96, 64, 2)[1], crs="EPSG:32617")
    bad_values = tile_arrays(64, 96, 3)[1]
    bad_values[0, 0] = 7
    write_raster(root / "masks" / "tile3.tif", bad_values)
    (root / "images" / "tile4.tif").write_bytes(b"not a tiff")
    tiles, problems, _, classes = checked(root, generic_table(3))
    assert [t.name for t in tiles] == ["tile5.tif"]
    reasons = {p.name: p.reason for p in problems}
    assert "mask is 80x64 pixels, image 96x64" in reasons["tile0.tif"]
    assert "transform differs" in reasons["tile1.tif"]
    assert "CRS EPSG:32617 differs" in reasons["tile2.tif"]
    assert "mask values 7 are not class ids (0..2)" in reasons["tile3.tif"]
    assert reasons["tile4.tif"].startswith("cannot read")


def test_many_bad_pairs_are_one_line_with_the_first_few(tmp_path, caplog):
    """16 tiles smaller than a crop: one error (count, three names, where the rest are)."""
    problems = [PairProblem(f"t{i:02d}.tif", "tile is 20x20 pixels, smaller than a local crop "
                                             "(32); use a smaller --size-p") for i in range(16)]
    caplog.set_level("INFO", logger="glnet_cli.training.data")
    with pytest.raises(DataError) as err:
        settle_problems(problems, False, "tiles", print)
    assert str(err.value) == (
        "tiles: 16 tile pair(s) cannot be used (fix them, or skip them with --skip-bad): "
        "t00.tif: tile is 20x20 pixels, smaller than a local crop (32); use a smaller --size-p; "
        "t01.tif: tile is 20x20 pixels, smaller than a local crop (32); use a smaller --size-p; "
        "t02.tif: tile is 20x20 pixels, smaller than a local crop (32); use a smaller --size-p; "
        "and 13 more ('glnet -v train ...' lists them all)")
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        f"cannot use t{i:02d}.tif" for i in range(16)]
    warned = []
    settle_problems(problems[:2], True, "tiles", warned.append)
    assert warned == ["tiles: skipping 2 tile pair(s) that cannot be used: t00.tif: tile is "
                      "20x20 pixels, smaller than a local crop (32); use a smaller --size-p; "
                      "t01.tif: tile is 20x20 pixels, smaller than a local crop (32); use a "
                      "smaller --size-p"]


def test_colour_masks_need_a_table_and_known_colours(tmp_path):
    root = make_tiles(tmp_path / "dg", 2, layout="deepglobe")
    tiles, problems, bands, _ = checked(root, DEEPGLOBE)
    assert not problems and bands == (1, 2, 3)
    assert tiles[0].colour_mask and set(tiles[0].values) == {1, 2, 5}
    assert "give its class table with --classes" in checked(root, None)[1][0].reason
    rgb = np.zeros((3, 80, 80), np.uint8)
    rgb[:, 5, 5] = (1, 2, 3)
    write_plain(root / "1_mask.png", rgb)
    problem = checked(root, DEEPGLOBE)[1][0]
    assert problem.name == "1_sat.jpg"
    assert problem.reason.startswith("1_mask.png: colour (")
    assert problem.reason.endswith("is not in the class table")


def test_small_tiles_and_inferred_classes(tmp_path):
    root = make_tiles(tmp_path / "t", 2)
    tiles, problems, _, classes = checked(root, None, min_size=72)
    assert len(classes) == 3 and [p.name for p in problems] == ["tile0.tif"]
    assert "smaller than a local crop (72)" in problems[0].reason


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("turns", [0, 1, 2, 3])
def test_augment_windows_match_the_augmented_tile(flip, turns):
    full = np.arange(2 * 7 * 11).reshape(2, 7, 11)
    aug = Augment(flip, turns)
    turned = aug.apply(full)
    assert turned.shape[-2:] == aug.shape(7, 11)
    for box in (Box(0, 0, 3, 4), Box(2, 1, 5, 2), Box(1, 3, 2, 3)):
        src = aug.source_box(box, 7, 11)
        window = full[:, src.row:src.bottom, src.col:src.right]
        np.testing.assert_array_equal(aug.apply(window),
                                      turned[:, box.row:box.bottom, box.col:box.right])


def spec_for(tiles, classes, size_p=32) -> ReadSpec:
    return ReadSpec((1, 2, 3), InputScaling.fixed("uint8", 3), classes, 255, 64, size_p)


def test_dataset_crops_are_windows_of_the_augmented_tile(tmp_path):
    root = make_tiles(tmp_path / "t", 2)
    tiles, _, _, classes = checked(root)
    dataset = TileDataset(tiles, spec_for(tiles, classes), crops=True, train=True, seed=3)
    for epoch in range(3):
        sample = dataset[(epoch, 0)]
        aug = Augment.random(np.random.default_rng([3, epoch, 0]))
        with rasterio.open(tiles[0].pair.image) as src:
            image = aug.apply(src.read()) / np.float32(255)
        with rasterio.open(tiles[0].pair.mask) as src:
            mask = aug.apply(src.read(1))
        assert sample.shape == mask.shape and sample.image_global.shape == (3, 64, 64)
        assert sample.label_global.shape == (64, 64)
        assert sample.patches.shape[0] == len(sample.boxes) == len(sample.top_lefts) > 1
        for box, patch, label, (top, left) in zip(sample.boxes, sample.patches,
                                                  sample.patch_labels, sample.top_lefts):
            np.testing.assert_allclose(patch.numpy(),
                                       image[:, box.row:box.bottom, box.col:box.right])
            np.testing.assert_array_equal(label.numpy(),
                                          mask[box.row:box.bottom, box.col:box.right])
            assert (top, left) == (box.row / mask.shape[0], box.col / mask.shape[1])
        assert sample.ratio == (32 / mask.shape[0], 32 / mask.shape[1])
    again = TileDataset(tiles, spec_for(tiles, classes), crops=True, train=True, seed=3)
    assert np.array_equal(again[(2, 0)].patches.numpy(), dataset[(2, 0)].patches.numpy())
    val = TileDataset(tiles, spec_for(tiles, classes), crops=False, train=False)[0]
    with rasterio.open(tiles[0].pair.mask) as src:
        np.testing.assert_array_equal(val.label.numpy(), src.read(1))


def test_nodata_pixels_are_ignored(tmp_path):
    root = make_tiles(tmp_path / "t", 1)
    image, mask = tile_arrays(64, 96, 0)
    image[:, :10] = 0
    write_raster(root / "images" / "tile0.tif", image, nodata=0)
    tiles, _, _, classes = checked(root)
    assert tiles[0].has_mask
    sample = TileDataset(tiles, spec_for(tiles, classes), crops=False, train=False)[0]
    assert (sample.label.numpy()[:10] == IGNORE_INDEX).all()
    assert (sample.label.numpy()[10:] == mask[10:]).all()


def test_split_is_by_name_only(tmp_path):
    tiles, _, _, _ = checked(make_tiles(tmp_path / "t", 6))
    train, val = split_by_name(tiles, 0.3)
    assert len(val) == 2 and len(train) == 4
    train2, val2 = split_by_name(list(reversed(tiles)), 0.3)
    assert {t.name for t in val2} == {t.name for t in val}
    assert split_by_name(tiles, 0) == (tiles, [])
    assert len(split_by_name(tiles[:2], 0.9)[0]) == 1


def test_epoch_batches_split_across_ranks():
    one = epoch_batches(10, 3, epoch=1, seed=5)
    assert one == epoch_batches(10, 3, epoch=1, seed=5) != epoch_batches(10, 3, 2, 5)
    assert sorted(i for b in one for _, i in b) == list(range(10))
    ranks = [epoch_batches(10, 2, 1, 5, rank=r, world_size=4) for r in range(4)]
    assert {len(r) for r in ranks} == {2} and all(k[0] == 1 for r in ranks for b in r for k in b)
    assert {i for r in ranks for b in r for _, i in b} == set(range(10))


def test_scaling(tmp_path):
    tiles, _, _, _ = checked(make_tiles(tmp_path / "t", 2))
    assert measure_scaling(tiles, (1, 2, 3)) == InputScaling.fixed("uint8", 3)
    root = tmp_path / "u16"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    values = np.arange(100 * 100, dtype=np.uint16).reshape(1, 100, 100)
    values[0, :, :5] = 0
    write_raster(root / "images" / "a.tif", values, nodata=0)
    write_raster(root / "masks" / "a.tif", np.zeros((100, 100), np.uint8))
    tiles, _, _, _ = checked(root)
    scaling = measure_scaling(tiles, (1,))
    assert scaling.mode == "stats" and scaling.dtype == "uint16"
    assert 150 < scaling.offset[0] < 400 and 9700 < scaling.offset[0] + 1 / scaling.scale[0] < 9900


def test_problem_text():
    assert str(PairProblem("a.tif", "mask has no image")) == "a.tif: mask has no image"
