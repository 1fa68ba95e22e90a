"""Small helpers for tests: tiny GeoTIFFs with known content, tiny models, glnet runs."""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import Affine

if TYPE_CHECKING:
    from click.testing import Result

#: A UTM-like grid: 0.5 m pixels, north-up.
DEFAULT_TRANSFORM = Affine(0.5, 0.0, 500000.0, 0.0, -0.5, 4100000.0)
DEFAULT_CRS = "EPSG:32616"


def write_raster(path: Path | str, array: np.ndarray, transform: Affine = DEFAULT_TRANSFORM,
                 crs: Optional[str] = DEFAULT_CRS, nodata: Optional[float] = None,
                 tiled: bool = False, **profile) -> Path:
    """Write (bands, H, W) or (H, W) ``array`` as a GeoTIFF and return its path."""
    if array.ndim == 2:
        array = array[None]
    meta = dict(driver="GTiff", width=array.shape[2], height=array.shape[1],
                count=array.shape[0], dtype=array.dtype, transform=transform, nodata=nodata)
    if crs is not None:
        meta["crs"] = crs
    if tiled:
        meta.update(tiled=True, blockxsize=16, blockysize=16)
    meta.update(profile)
    with rasterio.open(path, "w", **meta) as dst:
        dst.write(array)
    return Path(path)


def run_glnet(*args: object, env: Optional[dict] = None, input: Optional[str] = None) -> Result:
    """``glnet ARGS`` run in this process by click's ``CliRunner``; ARGS may be paths or numbers.

    The result has ``exit_code``, ``stdout``, ``stderr`` and ``output`` (the two
    interleaved). ``env`` adds to (or, with a None value, removes from) the environment.
    """
    from click.testing import CliRunner

    from glnet_cli.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], env=env, input=input)


def glnet_command(*args: object) -> list[str]:
    """``glnet ARGS`` as a command line for a fresh interpreter: this Python's ``-m glnet_cli``.

    No test depends on a ``glnet`` executable on PATH (an unactivated virtualenv).
    """
    return [sys.executable, "-m", "glnet_cli", *map(str, args)]


def run_glnet_process(*args: object, env: Optional[dict] = None, timeout: float = 300,
                      file_size_limit: Optional[int] = None) -> subprocess.CompletedProcess:
    """``glnet ARGS`` in a fresh interpreter (:func:`glnet_command`), its output captured as text.

    ``env`` adds to this process's environment. ``file_size_limit`` stands in for a
    full disk in the child: its files cannot grow past that many bytes (RLIMIT_FSIZE;
    SIGXFSZ stays ignored, so a write past it fails with EFBIG).
    """
    def limit() -> None:
        if file_size_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.run(glnet_command(*args), capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, preexec_fn=limit)


def corrupt_raster(path: Path | str) -> Path:
    """A tiled, compressed GeoTIFF whose middle blocks fail to decode (its header reads fine)."""
    rng = np.random.default_rng(1)
    path = write_raster(path, rng.integers(0, 255, (3, 256, 256), np.uint8), tiled=True,
                        compress="deflate")
    data = bytearray(path.read_bytes())
    data[len(data) // 2:len(data) // 2 + 20000] = b"\x55" * 20000
    path.write_bytes(bytes(data))
    return path


def make_tiny_model(path: Path | str, bands: int = 3, l2g: bool = True, size_p: int = 32,
                    size_g: int = 64, context: int = 256, dtype: str = "uint8",
                    n_classes: int = 4, seed: int = 0) -> Path:
    """A random tiny GLNet model file (resnet18, FPN width 16).

    The aggregation conv is scaled up so that the random network's classes
    vary with the image instead of one class winning everywhere.
    """
    import torch

    from glnet_cli.classes import generic_table
    from glnet_cli.io.model.checkpoint import InputScaling, ModelInfo, save_model
    from models.glnet import GLNet

    torch.manual_seed(seed)
    model = GLNet(n_classes, "resnet18", bands, width=16, l2g=l2g).eval()
    with torch.no_grad():
        model.aggregate.weight.mul_(300.0)
    scaling = (InputScaling.fixed(dtype, bands) if dtype in ("uint8", "uint16")
               else InputScaling.from_stats(dtype, [0.0] * bands, [1.0] * bands))
    info = ModelInfo(config=model.config, classes=generic_table(n_classes), size_g=size_g,
                     size_p=size_p, context_size=context, scaling=scaling,
                     stage=3 if l2g else 2, gsd=None)
    save_model(path, model, info)
    return Path(path)


def rule_scene(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A uint8 RGB scene of random patches, each dominated by one band, with texture.

    The 'class' of a pixel is its brightest band: unambiguous inside patches,
    so a briefly trained network gets it right away from patch borders.
    """
    rng = np.random.default_rng(seed)
    cells = max(4, height * width // 900)
    centres = rng.uniform(0, 1, (cells, 2)) * (height, width)
    owner_band = rng.integers(0, 3, cells)
    yy, xx = np.mgrid[0:height, 0:width]
    nearest = np.argmin((yy[..., None] - centres[:, 0]) ** 2 + (xx[..., None] - centres[:, 1]) ** 2,
                        axis=-1)
    dominant = owner_band[nearest]
    base = rng.uniform(40, 110, (3, cells))[:, nearest]
    image = base + 110 * (np.arange(3)[:, None, None] == dominant)
    image += 12 * np.sin(xx / 5.0) * np.cos(yy / 7.0) + rng.normal(0, 6, (3, height, width))
    return np.clip(image, 0, 255).astype(np.uint8)


def make_rule_model(path: Path | str, steps: int = 60, lr: float = 3e-3, size_p: int = 64,
                    size_g: int = 64,
                    context: int = 512) -> Path:
    """A tiny stage-2 model trained for a few seconds to label each pixel by its brightest band.

    Its predictions follow the image rather than the crop position, which is
    what the seam and accuracy tests need (a random network mostly outputs one
    class).
    """
    import torch
    import torch.nn.functional as F

    from glnet_cli.classes import generic_table
    from glnet_cli.io.model.checkpoint import InputScaling, ModelInfo, save_model
    from models.glnet import GLNet
    from models.losses import FocalLoss

    torch.manual_seed(0)
    model = GLNet(3, "resnet18", 3, width=16)
    optimizer = torch.optim.Adam(model.set_stage(2), lr=lr)
    model.train()
    loss_fn = FocalLoss(gamma=0)
    tile = 2 * size_p
    starts = [0, size_p // 2, size_p]
    tl = [(r / tile, c / tile) for r in starts for c in starts]
    ratio = (size_p / tile, size_p / tile)
    for step in range(steps):
        image = rule_scene(tile, tile, seed=step + 1)
        labels = image.argmax(0)
        x = torch.from_numpy(image.astype(np.float32) / 255)[None]
        with torch.no_grad():
            context_pyramid = model.global_pyramid(F.interpolate(x, size=(size_g, size_g),
                                                                 mode="bilinear"))
        patches = torch.stack([x[0, :, r:r + size_p, c:c + size_p] for r in starts for c in starts])
        target = torch.stack([torch.from_numpy(labels[r:r + size_p:4, c:c + size_p:4])
                              for r in starts for c in starts]).long()
        local = model.local_pyramid(patches, context_pyramid, tl, ratio)
        aggregated, _ = model.aggregated(local.ps3, context_pyramid.ps3, tl, ratio)
        loss = loss_fn(aggregated, target) + loss_fn(local.logits, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    model.stage = 2
    info = ModelInfo(config=model.config, classes=generic_table(3), size_g=size_g, size_p=size_p,
                     context_size=context, scaling=InputScaling.fixed("uint8", 3), stage=2)
    save_model(path, model, info)
    return Path(path)


#: How a write past ``file_size_limit`` is reported (EFBIG, as on a full file system).
FILE_TOO_LARGE = "File too large (the file size limit, ulimit -f)"


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Stand in for a full disk in this process: files cannot grow past ``limit`` bytes.

    Python ignores SIGXFSZ, so a write past the limit fails with EFBIG.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


#: (height, width) of the tiles :func:`make_tiles` writes, in turn.
TILE_SIZES = [(64, 96), (80, 80), (96, 64)]


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
    from glnet_cli.classes import DEEPGLOBE

    if layout == "folders":
        (root / "images").mkdir(parents=True)
        (root / "masks").mkdir()
    else:
        root.mkdir(parents=True)
    for i in range(count):
        image, mask = tile_arrays(*TILE_SIZES[i % len(TILE_SIZES)], seed=seed + i)
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


def checked_tiles(root: Path, classes=None, min_size: int = 1):
    """The tiles of a folder as training checks them: (tiles, problems, bands, classes)."""
    from glnet_cli.training.tile_set import check_tiles, infer_classes
    from glnet_cli.training.tiles import TileInfo, discover_tiles, inspect_pairs

    pairs, problems = discover_tiles(root)
    infos = inspect_pairs(pairs, classes, min_size)
    classes = classes or infer_classes([i for i in infos if isinstance(i, TileInfo)], 255)
    tiles, more, bands = check_tiles(infos, classes, 255)
    return tiles, problems + more, bands, classes
