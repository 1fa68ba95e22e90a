"""glnet_cli/training/dataset.py: samples read as segment reads, augmented; batches; splits."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from glnet_cli.classes import IGNORE_INDEX
from glnet_cli.io.model.checkpoint import InputScaling
from glnet_cli.io.raster.read import SceneReader, inspect_scene
from glnet_cli.io.raster.windows import Box
from glnet_cli.training.augment import Augment
from glnet_cli.training.dataset import ReadSpec, TileDataset, epoch_batches, split_by_name
from tests.helpers import checked_tiles, make_tiles, tile_arrays, write_raster


def spec_for(tiles, classes, size_p=32) -> ReadSpec:
    return ReadSpec((1, 2, 3), InputScaling.fixed("uint8", 3), classes, 255, 64, size_p)


def test_dataset_crops_are_windows_of_the_augmented_tile(tmp_path):
    root = make_tiles(tmp_path / "t", 2)
    tiles, _, _, classes = checked_tiles(root)
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
    tiles, _, _, classes = checked_tiles(root)
    assert tiles[0].has_mask
    sample = TileDataset(tiles, spec_for(tiles, classes), crops=False, train=False)[0]
    assert (sample.label.numpy()[:10] == IGNORE_INDEX).all()
    assert (sample.label.numpy()[10:] == mask[10:]).all()


def test_split_is_by_name_only(tmp_path):
    tiles, _, _, _ = checked_tiles(make_tiles(tmp_path / "t", 6))
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


def invalid_tile(root, kind: str):
    """One 80x96 tile whose image has a nodata frame or an alpha hole, and its mask."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    image, mask = tile_arrays(80, 96, 5)
    image = np.maximum(image, 1)
    if kind == "nodata":
        image[:, :7], image[:, :, -11:] = 0, 0
        write_raster(root / "images" / "a.tif", image, nodata=0)
    else:
        alpha = np.full((1, 80, 96), 255, np.uint8)
        alpha[0, 20:45, 30:70] = 0
        write_raster(root / "images" / "a.tif", np.concatenate([image, alpha]),
                     photometric="RGB", alpha="YES")
    write_raster(root / "masks" / "a.tif", mask)
    return root


def segment_input(reader, scaling, box, shape=None):
    """What segment feeds the network for ``box``: the engine's read, scaled, invalid pixels 0."""
    patch = reader.read(box) if shape is None else reader.read_decimated(box, shape)
    return scaling.apply(patch.data) * patch.valid, patch.valid


@pytest.mark.parametrize("kind", ["nodata", "alpha"])
def test_training_reads_exactly_what_segment_reads(tmp_path, kind):
    """Global view (decimated by averaging) and crops: the same inputs and valid pixels."""
    tiles, _, bands, classes = checked_tiles(invalid_tile(tmp_path / "t", kind))
    assert bands == (1, 2, 3) and tiles[0].has_mask
    spec = ReadSpec(bands, InputScaling.fixed("uint8", 3), classes, 255, 36, 32)
    whole = Box(0, 0, 80, 96)
    with rasterio.open(tiles[0].pair.mask) as src:
        mask = src.read(1)
    with SceneReader(inspect_scene(tiles[0].pair.image, list(bands))) as reader:
        view, view_valid = segment_input(reader, spec.scaling, whole, (36, 36))
        assert not view_valid.all() and view_valid.any()
        sample = TileDataset(tiles, spec, crops=True, train=False)[0]
        np.testing.assert_array_equal(sample.image_global.numpy(), view)
        valid = reader.read(whole).valid
        np.testing.assert_array_equal(sample.label.numpy(), np.where(valid, mask, IGNORE_INDEX))
        for box, patch in zip(sample.boxes, sample.patches):
            pixels, _ = segment_input(reader, spec.scaling, box)
            np.testing.assert_array_equal(patch.numpy(), pixels)

        trained = TileDataset(tiles, spec, crops=True, train=True, seed=1)[(2, 0)]
        aug = Augment.random(np.random.default_rng([1, 2, 0]))
        np.testing.assert_array_equal(trained.image_global.numpy(), aug.apply(view))
        np.testing.assert_array_equal(trained.label_global.numpy() == IGNORE_INDEX,
                                      aug.apply(~view_valid))
        for box, patch, labels in zip(trained.boxes, trained.patches, trained.patch_labels):
            source = aug.source_box(box, 80, 96)
            pixels, valid = segment_input(reader, spec.scaling, source)
            np.testing.assert_array_equal(patch.numpy(), aug.apply(pixels))
            np.testing.assert_array_equal(labels.numpy() == IGNORE_INDEX, aug.apply(~valid))
