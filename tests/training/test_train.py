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

from glnet_cli.io.model.checkpoint import load_model
from glnet_cli.training.train import TrainConfig, train
from tests.helpers import make_tiles, run_glnet, run_glnet_process, tile_arrays, write_raster

TINY = dict(backbone="resnet18", width=16, size_g=64, size_p=32, epochs=(1, 1, 1), lr=(1e-3,),
            batch_size=2, sub_batch_size=5, pretrained="none", num_workers=0, device="cpu",
            val_split=0.34)
TINY_ARGS = ["--backbone", "resnet18", "--width", "16", "--size-g", "64", "--size-p", "32",
             "--epochs", "1", "--lr", "1e-3", "--batch-size", "2", "--pretrained", "none",
             "--num-workers", "0", "--device", "cpu", "--val-split", "0.34"]


def tiny(tiles: Path, output: Path, **options) -> TrainConfig:
    return TrainConfig(tiles=str(tiles), output=str(output), **{**TINY, **options})


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_cli_runs_every_stage_and_writes_the_model(tiles, tmp_path):
    out = tmp_path / "model.pt"
    result = run_glnet("train", "--tiles", tiles, "-o", out, *TINY_ARGS, "--seed", "4",
                       "--color-jitter")
    assert result.exit_code == 0, result.output
    assert f"wrote {out}: stage 3, finished" in result.stdout
    assert "val mIoU" in result.stderr and "stage 3, epoch 1: loss" in result.stderr
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
    again = run_glnet("train", "--tiles", tiles, "-o", out, *TINY_ARGS)
    assert again.exit_code == 2 and "already exists (use --overwrite" in again.output


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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
        "model.best.pt", "model.curves.png", "model.metrics.jsonl", "model.preview.png",
        "model.pt", "tiles", "weights0.pt", "weights1.pt"]
    assert load_model(tmp_path / "model.pt").info.provenance["world_size"] == 2


@pytest.mark.slow
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
    result = run_glnet("train", "--tiles", root, "-o", out, "--classes", "3", *TINY_ARGS)
    assert result.exit_code == 2 and not out.exists()
    [message] = result.stderr.splitlines()
    assert message.startswith(f"glnet: error: {root}: 6 tile pair(s) cannot be used")
    assert message.endswith(": tile4.tif: image has no mask; lonely.tif: mask has no image; "
                            "tile0.tif: mask is 90x64 pixels, image 96x64; and 3 more "
                            "('glnet -v train ...' lists them all)")
    verbose = run_glnet_process("-v", "train", "--tiles", root, "-o", out, "--classes", "3",
                                *TINY_ARGS)
    assert verbose.returncode == 2 and verbose.stderr.endswith(f"{message}\n")
    listed = [line for line in verbose.stderr.splitlines() if " cannot use " in line]
    assert sorted(line.split(" cannot use ")[1].split(":")[0] for line in listed) == [
        "lonely.tif", "tile0.tif", "tile1.tif", "tile2.tif", "tile3.tif", "tile4.tif"]
    result = run_glnet("train", "--tiles", root, "-o", out, "--classes", "3", "--skip-bad",
                       "--stage", "1", *TINY_ARGS)
    assert result.exit_code == 0, result.output
    [warning] = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warning.startswith(f"glnet: warning: {root}: skipping 6 tile pair(s) that cannot "
                              "be used: tile4.tif: image has no mask; ")
    assert load_model(out).info.provenance["n_tiles"] == 1


@pytest.mark.parametrize("args, message", [
    (["--stage", "2"], "--stage 2 starts from a model that completed stage 1"),
    (["--pretrained", "imagenet"], "ImageNet weights for resnet18 could not be loaded: not "
                                   "cached, and downloading https://download.pytorch.org/models/"
                                   "resnet18-f37072fd.pth failed: Network is unreachable (on a "
                                   "machine without internet, copy that file to "),
    (["--resume"], "model file not found"),
    (["--ignore-index", "1"], "--ignore-index 1 is a class id"),
])
def test_option_errors(tiles, tmp_path, args, message):
    result = run_glnet("train", "--tiles", tiles, "-o", tmp_path / "m.pt", *TINY_ARGS, *args)
    assert result.exit_code == 2 and message in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_init_pretrained_val_folder_and_deepglobe_tiles(tmp_path):
    tiles = make_tiles(tmp_path / "dg", 4, layout="deepglobe")
    val = make_tiles(tmp_path / "dg_val", 2, layout="deepglobe", seed=10)
    first = tmp_path / "stage1.pt"
    result = run_glnet("train", "--tiles", tiles, "-o", first, "--classes", "deepglobe", "--stage",
                       "1", *TINY_ARGS, "--val", val)
    assert result.exit_code == 0, result.output
    info = load_model(first).info
    assert info.stage == 1 and info.gsd is None and len(info.classes) == 7
    assert (info.provenance["n_tiles"], info.provenance["n_val"]) == (4, 2)
    other = tmp_path / "transfer.pt"
    result = run_glnet("train", "--tiles", make_tiles(tmp_path / "idx", 2), "-o", other, "--stage",
                       "1", *TINY_ARGS, "--lr", "1e-12", "--pretrained", first)
    assert result.exit_code == 0, result.output
    source, transferred = load_model(first).model, load_model(other).model
    assert transferred.config.n_classes == 3
    for a, b in zip(source.global_branch.backbone.parameters(),
                    transferred.global_branch.backbone.parameters()):
        torch.testing.assert_close(a, b)
    args = [a for a in TINY_ARGS if a not in ("--backbone", "resnet18")]
    result = run_glnet("train", "--tiles", tiles, "-o", tmp_path / "bad.pt", "--init", first,
                       "--stage", "2", *args, "--backbone", "resnet34")
    assert result.exit_code == 2 and "--backbone resnet34 differs" in result.output
    second = tmp_path / "stage2.pt"
    result = run_glnet("train", "--tiles", tiles, "-o", second, "--init", first, "--stage", "2",
                       *[a for a in TINY_ARGS if a not in ("--size-g", "64")])
    assert result.exit_code == 0, result.output
    model = load_model(second)
    assert model.info.stage == 2 and not model.model.has_l2g
    before, after = load_model(first).model, model.model
    assert all(torch.equal(a, b) for a, b in zip(before.global_branch.parameters(),
                                                 after.global_branch.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(before.local_branch.parameters(),
                                                     after.local_branch.parameters()))


#: TINY_ARGS without --pretrained: the default start (ImageNet if it can be had).
DEFAULT_START = [a for a in TINY_ARGS if a not in ("--pretrained", "none")]


@pytest.mark.slow
def test_no_output_and_no_imagenet_weights_still_train(tiles, tmp_path, monkeypatch):
    """`glnet train --tiles dir/`: model.pt in the current folder; offline, random weights."""
    monkeypatch.chdir(tmp_path)
    result = run_glnet("train", "--tiles", tiles, "--stage", "1", *DEFAULT_START)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("glnet: warn")]
    assert warnings == [
        "glnet: warning: ImageNet weights for resnet18 could not be loaded (not cached, and "
        "downloading https://download.pytorch.org/models/resnet18-f37072fd.pth failed: Network "
        "is unreachable); starting from random weights"]
    model = tmp_path / "model.pt"
    assert f"wrote {model}: stage 1, finished" in result.stdout
    assert load_model(model).info.provenance["pretrained"] == "none"
    before = model.read_bytes()
    again = run_glnet("train", "--tiles", tiles, "--stage", "1", *DEFAULT_START)
    assert again.exit_code == 2
    assert again.stderr == f"glnet: error: {model}: already exists (use --overwrite to " \
                           "replace it)\n"
    assert model.read_bytes() == before
    resumed = run_glnet("train", "--resume")
    assert resumed.exit_code == 0 and f"wrote {model}: stage 1, finished" in resumed.stdout


@pytest.mark.slow
def test_imagenet_weights_are_downloaded_into_torchvisions_cache(tiles, tmp_path, monkeypatch):
    from torchvision.models import resnet18

    fake = resnet18(weights=None).state_dict()
    fetched = []

    def download(url, dst, hash_prefix=None, progress=True):
        fetched.append((url, hash_prefix))
        torch.save(fake, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    out = tmp_path / "m.pt"
    result = run_glnet("train", "--tiles", tiles, "-o", out, "--stage", "1", *DEFAULT_START,
                       "--pretrained", "imagenet")
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr
    assert fetched == [("https://download.pytorch.org/models/resnet18-f37072fd.pth", "f37072fd")]
    cached = Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert cached.is_file()
    local = load_model(out).model.local_branch.backbone  # stage 1 leaves it as it started
    assert torch.equal(local.layer4[1].conv2.weight, fake["layer4.1.conv2.weight"])
    assert load_model(out).info.provenance["pretrained"] == "imagenet"


def test_fp16_on_the_cpu_is_refused_before_imagenet_weights_are_fetched(tiles, tmp_path,
                                                                        monkeypatch):
    fetched = []
    monkeypatch.setattr(torch.hub, "download_url_to_file",
                        lambda url, *args, **kwargs: fetched.append(url))
    result = run_glnet("train", "--tiles", tiles, "-o", tmp_path / "m.pt", *DEFAULT_START,
                       "--precision", "fp16")
    assert result.exit_code == 2
    assert result.output == ("glnet: error: --precision fp16: the CPU has no fast float16 "
                             "arithmetic; use bf16, fp32 or auto (or run on a CUDA GPU)\n")
    assert fetched == [] and list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_an_output_that_is_an_input_is_refused(tiles, tmp_path):
    first = tmp_path / "first.pt"
    assert run_glnet("train", "--tiles", tiles, "-o", first, "--stage", "1",
                     *TINY_ARGS).exit_code == 0
    before = first.read_bytes()
    os.link(first, tmp_path / "link.pt")
    for args in (["-o", first, "--init", first, "--stage", "2"],
                 ["-o", tmp_path / "link.pt", "--init", first, "--stage", "2"],
                 ["-o", first, "--stage", "1", "--pretrained", first],
                 ["-o", first, "--init", tmp_path / "first.best.pt", "--stage", "2"]):
        result = run_glnet("train", "--tiles", tiles, *TINY_ARGS, *args, "--overwrite")
        assert result.exit_code == 2, result.output
        assert "is the same file as the input" in result.stderr
        assert len(result.stderr.splitlines()) == 1
    resumed = run_glnet("train", "--resume", "-o", first)  # a resumed run writes back on purpose
    assert resumed.exit_code == 0 and first.read_bytes() == before  # (it had nothing left)


@pytest.mark.slow
def test_a_full_disk_stops_with_one_line_and_publishes_nothing(tiles, tmp_path):
    """RLIMIT_FSIZE in a child process stands in for a full disk."""
    out = tmp_path / "out"
    out.mkdir()
    done = run_glnet_process("train", "--tiles", tiles, "-o", out / "model.pt", "--stage", "1",
                             *TINY_ARGS, "-q", env={"OMP_NUM_THREADS": "1"},
                             file_size_limit=1 << 20)
    assert done.returncode == 1, done.stderr
    assert done.stderr == (f"glnet: error: {out / 'model.best.pt'}: writing failed: File too "
                           "large; nothing was written\n")
    assert os.listdir(out) == []


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
    take ~60 s here; an all-background prediction scores 0. From scratch on so
    little data the building IoU swings from epoch to epoch, and the seed or a
    change of the inputs as small as the global view's resampling (bilinear
    -> average) moves the whole curve: at --lr 1e-3 seeds 0, 1, 2 ended (mean
    of the last 5 epochs) at 0.026, 0.013, 0.098. At 3e-4 it peaked at 0.135,
    0.093, 0.130 and the last 8 epochs averaged 0.035, 0.028, 0.053: the best
    epoch (by --monitor, the building IoU here: the one MODEL.best.pt keeps) and that
    average are checked.
    """
    tiles = cut_spacenet(shared_data, tmp_path / "tiles")
    out = tmp_path / "model.pt"
    result = run_glnet("train", "--tiles", tiles, "-o", out, "--backbone", "resnet18", "--width",
                       "128", "--size-g", "128", "--stage", "1", "--epochs", "16", "--lr", "3e-4",
                       "--batch-size", "2", "--classes", "2", "--pretrained", "none", "--val-split",
                       "0.2", "--num-workers", "0", "--device", "cpu", "-q")
    assert result.exit_code == 0, result.output
    records = read_log(tmp_path / "model.metrics.jsonl")
    buildings = [r["val_iou"]["class_1"] for r in records]
    assert np.mean(buildings[-8:]) > 0.015, buildings
    best = [r for r in records if r["best"]][-1]  # by --monitor: the building IoU here
    assert best["val_iou"]["class_1"] > 0.06, buildings
    info = load_model(tmp_path / "model.best.pt").info
    assert info.scaling.mode == "stats" and info.scaling.dtype == "uint16"
    assert info.gsd == 0.5 and info.provenance["n_val"] == 8
    assert np.isclose(info.provenance["metrics"]["monitor"], best["monitor"])
    assert best["monitor"] == max(r["monitor"] for r in records)
