"""``glnet train``: the three stages, checkpoints, resume, seeds, DDP, input errors, learning."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import torch.multiprocessing as mp
from click.testing import CliRunner

from glnet_cli.checkpoint import load_model
from glnet_cli.cli import main
from glnet_cli.train import TrainConfig, train
from tests.helpers import write_raster
from tests.test_data import make_tiles, tile_arrays

TINY = dict(backbone="resnet18", width=16, size_g=64, size_p=32, epochs=(1, 1, 1), lr=(1e-3,),
            batch_size=2, sub_batch_size=5, pretrained="none", num_workers=0, device="cpu",
            val_split=0.34)
TINY_ARGS = ["--backbone", "resnet18", "--width", "16", "--size-g", "64", "--size-p", "32",
             "--epochs", "1", "--lr", "1e-3", "--batch-size", "2", "--pretrained", "none",
             "--num-workers", "0", "--device", "cpu", "--val-split", "0.34"]


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: on a busy 2-core machine, OpenMP's spinning threads slow CPU torch 10x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiles(tmp_path_factory) -> Path:
    return make_tiles(tmp_path_factory.mktemp("train") / "tiles", 6)


def tiny(tiles: Path, output: Path, **options) -> TrainConfig:
    return TrainConfig(tiles=str(tiles), output=str(output), **{**TINY, **options})


def glnet_train(*args: str):
    return CliRunner().invoke(main, ["train", *map(str, args)])


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_cli_runs_every_stage_and_writes_the_model(tiles, tmp_path):
    out = tmp_path / "model.pt"
    result = glnet_train("--tiles", tiles, "-o", out, *TINY_ARGS, "--seed", "4",
                         "--color-jitter")
    assert result.exit_code == 0, result.output
    assert f"wrote {out}: stage 3, finished" in result.stdout
    assert "val mIoU" in result.stderr and "stage 3, epoch 1/1" in result.stderr
    loaded = load_model(out)
    info = loaded.info
    assert loaded.model.has_l2g and info.stage == loaded.model.stage == 3
    assert (info.size_g, info.size_p, info.context_size, info.gsd) == (64, 32, 80, 0.5)
    assert info.classes.names == ["class_0", "class_1", "class_2"]
    assert info.scaling.mode == "dtype-range" and info.config.in_channels == 3
    assert info.provenance["n_tiles"] + info.provenance["n_val"] == 6
    assert info.provenance["epochs_done"] == {"1": 1, "2": 1, "3": 1}
    assert info.provenance["seed"] == 4 and info.provenance["tiles"] == str(tiles)
    assert loaded.training_state["stage"] == 3
    assert load_model(tmp_path / "model.best.pt").training_state is None
    lines = read_log(tmp_path / "model.metrics.jsonl")
    assert [(r["stage"], r["epoch"]) for r in lines] == [(1, 1), (2, 1), (3, 1)]
    assert set(lines[0]) >= {"train_loss", "val_miou", "val_iou", "lr", "seconds"}
    again = glnet_train("--tiles", tiles, "-o", out, *TINY_ARGS)
    assert again.exit_code == 2 and "already exists (use --overwrite" in again.output


def test_resume_continues_exactly(tiles, tmp_path):
    """Two epochs of stage 2 in one go equal one epoch, a stop, and a resumed run."""
    whole = train(tiny(tiles, tmp_path / "a.pt", epochs=(1, 2, 1), seed=1))
    first = train(tiny(tiles, tmp_path / "b.pt", epochs=(1, 2, 1), seed=1),
                  on_epoch=lambda record: record.stage == 2)
    assert not first.finished and load_model(tmp_path / "b.pt").training_state["epoch"] == 1
    resumed = train(TrainConfig(tiles="", output=str(tmp_path / "b.pt"), resume=True,
                                num_workers=0, device="cpu"))
    assert resumed.finished and whole.finished
    key = [(r.stage, r.epoch, r.train_loss, r.val_miou) for r in whole.history]
    assert key == [(r.stage, r.epoch, r.train_loss, r.val_miou) for r in resumed.history]
    assert len(key) == 4 and key[1][2] != key[2][2]
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    done = train(TrainConfig(tiles="", output=str(tmp_path / "b.pt"), resume=True,
                             num_workers=0, device="cpu"))
    assert done.finished and len(done.history) == 4


def test_same_seed_same_losses(tiles, tmp_path):
    def first_loss(seed: int, name: str) -> float:
        result = train(tiny(tiles, tmp_path / name, stage="1", seed=seed, color_jitter=True))
        return result.history[0].train_loss

    assert first_loss(7, "a.pt") == first_loss(7, "b.pt") != first_loss(8, "c.pt")


def _ddp_worker(rank: int, tiles: Path, root: Path, port: int) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    result = train(tiny(tiles, root / "model.pt", batch_size=1, sub_batch_size=5))
    torch.save(result.model.state_dict(), root / f"weights{rank}.pt")


def test_two_process_ddp_keeps_weights_equal(tmp_path):
    """Ranks see different tiles (and different numbers of crops): gradients must be averaged."""
    tiles = make_tiles(tmp_path / "tiles", 7)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(tiles, tmp_path, port), nprocs=2)
    rank0, rank1 = (torch.load(tmp_path / f"weights{r}.pt") for r in (0, 1))
    saved = load_model(tmp_path / "model.pt").model.state_dict()
    assert all(torch.equal(rank0[k], rank1[k]) and torch.equal(rank0[k], saved[k]) for k in rank0)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "model.best.pt", "model.metrics.jsonl", "model.pt", "tiles", "weights0.pt", "weights1.pt"]
    assert load_model(tmp_path / "model.pt").info.provenance["world_size"] == 2


def test_every_bad_pair_stops_the_run_or_is_skipped(tmp_path):
    root = make_tiles(tmp_path / "tiles", 7)
    write_raster(root / "masks" / "tile0.tif", tile_arrays(64, 96, 0)[1][:, :90])
    with rasterio.open(root / "masks" / "tile1.tif") as src:
        mask, transform = src.read(1), src.transform
    write_raster(root / "masks" / "tile1.tif", mask, crs="EPSG:4326", transform=transform)
    mask = tile_arrays(96, 64, 2)[1]
    mask[3, 3] = 9
    write_raster(root / "masks" / "tile2.tif", mask)
    (root / "images" / "tile3.tif").write_bytes(b"\x00" * 100)
    (root / "masks" / "tile4.tif").rename(root / "masks" / "lonely.tif")
    out = tmp_path / "model.pt"
    result = glnet_train("--tiles", root, "-o", out, "--classes", "3", *TINY_ARGS)
    assert result.exit_code == 2 and not out.exists()
    message = result.output.strip().splitlines()[-1]
    assert message.startswith("glnet: error: ") and "6 tile pair(s) cannot be used" in message
    for name in ("tile0.tif", "tile1.tif", "tile2.tif", "tile3.tif", "tile4.tif", "lonely.tif"):
        assert name in message
    result = glnet_train("--tiles", root, "-o", out, "--classes", "3", "--skip-bad",
                         "--stage", "1", *TINY_ARGS)
    assert result.exit_code == 0, result.output
    assert result.output.count("glnet: warning: skipping ") == 6
    assert load_model(out).info.provenance["n_tiles"] == 1


@pytest.mark.parametrize("args, message", [
    (["--stage", "2"], "--stage 2 starts from a model that completed stage 1"),
    (["--pretrained", "imagenet"], "ImageNet weights for resnet18 are not cached"),
    (["--resume"], "model file not found"),
    (["--ignore-index", "1"], "--ignore-index 1 is a class id"),
])
def test_option_errors(tiles, tmp_path, args, message):
    result = glnet_train("--tiles", tiles, "-o", tmp_path / "m.pt", *TINY_ARGS, *args)
    assert result.exit_code == 2 and message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_init_pretrained_val_folder_and_deepglobe_tiles(tmp_path):
    tiles = make_tiles(tmp_path / "dg", 4, layout="deepglobe")
    val = make_tiles(tmp_path / "dg_val", 2, layout="deepglobe", seed=10)
    first = tmp_path / "stage1.pt"
    result = glnet_train("--tiles", tiles, "-o", first, "--classes", "deepglobe", "--stage", "1",
                         *TINY_ARGS, "--val", val)
    assert result.exit_code == 0, result.output
    info = load_model(first).info
    assert info.stage == 1 and info.gsd is None and len(info.classes) == 7
    assert (info.provenance["n_tiles"], info.provenance["n_val"]) == (4, 2)
    other = tmp_path / "transfer.pt"
    result = glnet_train("--tiles", make_tiles(tmp_path / "idx", 2), "-o", other, "--stage", "1",
                         *TINY_ARGS, "--lr", "1e-12", "--pretrained", first)
    assert result.exit_code == 0, result.output
    source, transferred = load_model(first).model, load_model(other).model
    assert transferred.config.n_classes == 3
    for a, b in zip(source.global_branch.backbone.parameters(),
                    transferred.global_branch.backbone.parameters()):
        torch.testing.assert_close(a, b)
    args = [a for a in TINY_ARGS if a not in ("--backbone", "resnet18")]
    result = glnet_train("--tiles", tiles, "-o", tmp_path / "bad.pt", "--init", first,
                         "--stage", "2", *args, "--backbone", "resnet34")
    assert result.exit_code == 2 and "--backbone resnet34 differs" in result.output
    second = tmp_path / "stage2.pt"
    result = glnet_train("--tiles", tiles, "-o", second, "--init", first, "--stage", "2",
                         *[a for a in TINY_ARGS if a not in ("--size-g", "64")])
    assert result.exit_code == 0, result.output
    model = load_model(second)
    assert model.info.stage == 2 and not model.model.has_l2g
    before, after = load_model(first).model, model.model
    assert all(torch.equal(a, b) for a, b in zip(before.global_branch.parameters(),
                                                 after.global_branch.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(before.local_branch.parameters(),
                                                     after.local_branch.parameters()))


def cut_spacenet(shared: Path, root: Path, tile: int = 150) -> Path:
    """The SpaceNet sample cut into tiles, with the building footprints rasterised as masks."""
    import fiona
    from rasterio.features import rasterize
    from rasterio.windows import Window

    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    with rasterio.open(shared / "spacenet" / "sample_geotiff.tif") as src:
        image = src.read(1)
        with fiona.open(shared / "spacenet" / "geotiff_labels.geojson") as features:
            shapes = [(f.geometry, 1) for f in features]
        labels = rasterize(shapes, out_shape=image.shape, transform=src.transform, dtype="uint8")
        for row in range(0, src.height, tile):
            for col in range(0, src.width, tile):
                window = Window(col, row, tile, tile)
                for sub, array in (("images", image), ("masks", labels)):
                    write_raster(root / sub / f"r{row}c{col}.tif",
                                 array[row:row + tile, col:col + tile],
                                 transform=src.window_transform(window), crs=src.crs,
                                 nodata=0 if sub == "images" else None)
    return root


@pytest.mark.slow
def test_learns_buildings_on_spacenet(shared_data, tmp_path):
    """Stage 1 from scratch learns buildings on held-out SpaceNet tiles.

    The 900 x 900 panchromatic scene is cut into 36 tiles of 150 px; --val-split
    0.2 holds out 8 of them (chosen by file name; 5% of their pixels are
    buildings). Without ImageNet weights (none are cached offline) 16 epochs
    take ~60 s here; the building IoU on the held-out tiles was 0.099 at the
    last epoch (0.084 to 0.129 from epoch 6 on) and 0.115 at the best epoch
    (the one MODEL.best.pt keeps); an all-background prediction scores 0.
    """
    tiles = cut_spacenet(shared_data, tmp_path / "tiles")
    out = tmp_path / "model.pt"
    result = glnet_train("--tiles", tiles, "-o", out, "--backbone", "resnet18", "--width", "128",
                         "--size-g", "128", "--stage", "1", "--epochs", "16", "--lr", "1e-3",
                         "--batch-size", "2", "--classes", "2", "--pretrained", "none",
                         "--val-split", "0.2", "--num-workers", "0", "--device", "cpu", "-q")
    assert result.exit_code == 0, result.output
    records = read_log(tmp_path / "model.metrics.jsonl")
    buildings = [r["val_iou"]["class_1"] for r in records]
    assert np.mean(buildings[-5:]) > 0.05, buildings
    best = max(records, key=lambda r: r["val_miou"])
    assert best["val_iou"]["class_1"] > 0.05, buildings
    info = load_model(tmp_path / "model.best.pt").info
    assert info.scaling.mode == "stats" and info.scaling.dtype == "uint16"
    assert info.gsd == 0.5 and info.provenance["n_val"] == 8
    assert np.isclose(info.provenance["metrics"]["val_miou"], best["val_miou"])
